// The CUDA backend's host-side decisions, run on the CPU: sub-groups, table sizes, and the rows every
// adapter visits in every step of every chunk, with the next chunk filled before the current one's epoch
// callbacks have answered (as the backend does to keep the GPU busy).
#include <doctest/doctest.h>

#include <map>
#include <numeric>
#include <random>

#include "trainer/cuda/schedule.hpp"

using namespace mlops::cuda_schedule;

namespace {

std::vector<std::uint32_t> order_of(int adapter, int epoch, long long n) {
  std::vector<std::uint32_t> rows(static_cast<std::size_t>(n));
  std::iota(rows.begin(), rows.end(), 0u);
  std::mt19937 rng(static_cast<unsigned>(adapter * 1000 + epoch));
  std::shuffle(rows.begin(), rows.end(), rng);
  return rows;
}

struct Replay {
  std::map<int, std::vector<std::vector<std::uint32_t>>> batches;  // adapter -> rows of each of its steps
  std::map<int, std::vector<float>> corr1, corr2;                  // adapter -> Adam's corrections per step
  std::map<int, std::vector<int>> ends;                            // adapter -> epochs reported as ended
  long long chunks = 0, most_steps = 0, adapter_steps = 0;
};

// Drives a schedule as module.cu does: fill chunk i+1 while chunk i "runs", then answer chunk i's epoch
// ends (stopping adapters in `stop_after`: adapter -> epoch), then "run" chunk i+1.
Replay replay(const std::vector<AdapterShape>& shapes, long long table_steps_cap,
              const std::map<int, int>& stop_after = {}) {
  long long largest = 1, longest = 1;
  for (const auto& a : shapes) largest = std::max(largest, a.batch), longest = std::max(longest, steps_per_epoch(a));
  std::vector<long long> offsets(shapes.size());
  for (std::size_t i = 1; i < shapes.size(); ++i) offsets[i] = offsets[i - 1] + shapes[i - 1].rows;
  StepSchedule sched(shapes, offsets, largest, table_steps_cap, [&](int a, int epoch, std::uint32_t* out) {
    const auto rows = order_of(a, epoch, shapes[static_cast<std::size_t>(a)].n_train);
    std::copy(rows.begin(), rows.end(), out);
  }, 4);
  const int S = sched.adapters();
  const auto cap = sched.capacity();
  // Two host buffers, as a pinned buffer is refilled while the device reads its copy of the previous one.
  std::vector<int> idx[2], cnt[2];
  std::vector<float> corr[2];
  for (int b = 0; b < 2; ++b) {
    idx[b].assign(static_cast<std::size_t>(cap * sched.slots()) + 1, -7);
    cnt[b].assign(static_cast<std::size_t>(cap * S) + 1, -7);
    corr[b].assign(static_cast<std::size_t>(cap * S * 2) + 1, -7.0f);
  }
  Replay out;
  int cur = 0;
  StepSchedule::Chunk chunk = sched.fill(idx[cur].data(), cnt[cur].data(), corr[cur].data());
  while (chunk.steps > 0) {
    // Nothing is written past the table's capacity.
    CHECK(idx[cur].back() == -7);
    CHECK(cnt[cur].back() == -7);
    CHECK(chunk.steps <= cap);
    out.chunks += 1;
    out.most_steps = std::max(out.most_steps, chunk.steps);
    out.adapter_steps += chunk.adapter_steps;
    long long counted = 0;
    for (long long c = 0; c < chunk.steps; ++c)
      for (int a = 0; a < S; ++a) {
        const int n = cnt[cur][static_cast<std::size_t>(c * S + a)];
        const int* rows = idx[cur].data() + (c * S + a) * largest;
        for (long long r = n; r < largest; ++r) CHECK(rows[r] == -1);
        if (n == 0) continue;
        counted += 1;
        std::vector<std::uint32_t> batch;
        for (int r = 0; r < n; ++r) batch.push_back(static_cast<std::uint32_t>(rows[r] - offsets[static_cast<std::size_t>(a)]));
        out.batches[a].push_back(batch);
        out.corr1[a].push_back(corr[cur][static_cast<std::size_t>((c * S + a) * 2)]);
        out.corr2[a].push_back(corr[cur][static_cast<std::size_t>((c * S + a) * 2 + 1)]);
      }
    CHECK(counted == chunk.adapter_steps);
    const auto ends = chunk.ends;
    // The next chunk is filled before this chunk's epoch callbacks answer.
    const int next = 1 - cur;
    sched.fill(idx[next].data(), cnt[next].data(), corr[next].data());
    for (const auto& e : ends) {
      out.ends[e.adapter].push_back(e.epoch);
      auto stop = stop_after.find(e.adapter);
      if (stop != stop_after.end() && stop->second == e.epoch) sched.stop(e.adapter);
    }
    chunk = sched.chunk();
    cur = next;
  }
  return out;
}

// What the CPU backend visits: each epoch's order in consecutive batches.
std::vector<std::vector<std::uint32_t>> expected(int a, const AdapterShape& s, int epochs) {
  std::vector<std::vector<std::uint32_t>> out;
  for (int e = 1; e <= epochs; ++e) {
    const auto rows = order_of(a, e, s.n_train);
    for (long long b = 0; b < s.n_train; b += s.batch)
      out.emplace_back(rows.begin() + b, rows.begin() + std::min(s.n_train, b + s.batch));
  }
  return out;
}

}  // namespace

TEST_CASE("every adapter visits its epochs' rows in order, whatever its neighbours and the table cap") {
  const std::vector<AdapterShape> shapes = {
      {100, 90, 32, 3},   // 3 steps per epoch, a last partial batch
      {50, 45, 45, 4},    // 1 step per epoch
      {300, 270, 8, 2},   // 34 steps per epoch
      {70, 63, 10, 5},    // 7 steps per epoch
  };
  for (long long cap : {1LL, 2LL, 5LL, 34LL, 1000LL}) {
    INFO("cap ", cap);
    const auto r = replay(shapes, cap);
    long long total = 0;
    for (int a = 0; a < 4; ++a) {
      const auto& s = shapes[static_cast<std::size_t>(a)];
      CHECK(r.batches.at(a) == expected(a, s, static_cast<int>(s.epochs)));
      std::vector<int> all(static_cast<std::size_t>(s.epochs));
      std::iota(all.begin(), all.end(), 1);
      CHECK(r.ends.at(a) == all);
      // Adam's bias corrections follow the adapter's own step count, bit for bit the CPU backend's: the
      // float betas widened to double, 1/(1 - beta^t) rounded to float.
      const auto& c1 = r.corr1.at(a);
      const auto& c2 = r.corr2.at(a);
      REQUIRE(c1.size() == c2.size());
      bool same = true;
      for (std::size_t t = 0; t < c1.size(); ++t) {
        const double steps = static_cast<double>(t + 1);
        same = same && c1[t] == static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(0.9f), steps))) &&
               c2[t] == static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(0.999f), steps)));
      }
      CHECK(same);
      total += static_cast<long long>(s.epochs) * steps_per_epoch(s);
    }
    CHECK(r.most_steps <= cap);
    CHECK(r.adapter_steps == total);
  }
}

TEST_CASE("an adapter stopped by its epoch callback leaves the chunk already filled") {
  const std::vector<AdapterShape> shapes = {{40, 36, 12, 6}, {40, 36, 12, 6}, {40, 36, 5, 6}};
  const auto r = replay(shapes, 100, {{0, 2}, {2, 1}});
  CHECK(r.batches.at(0) == expected(0, shapes[0], 2));
  CHECK(r.ends.at(0) == std::vector<int>{1, 2});
  CHECK(r.batches.at(1) == expected(1, shapes[1], 6));
  CHECK(r.batches.at(2) == expected(2, shapes[2], 1));
  CHECK(r.ends.at(2) == std::vector<int>{1});
}

TEST_CASE("step tables are sized by the capped chunk, not by the longest epoch of the group") {
  // One adapter of 1,000,000 rows at batch 32 (31,250 steps per epoch) among 999 of 2,000 rows at 256.
  std::vector<AdapterShape> shapes(1000, AdapterShape{2000, 1800, 256, 10});
  shapes[0] = {1'000'000, 1'000'000, 32, 10};
  const auto g = plan_subgroups(768, 0, 8, shapes, 120e9);
  REQUIRE(g.too_big < 0);
  REQUIRE(g.groups.size() == 1);
  const auto& sub = g.groups[0];
  CHECK(sub.largest_batch == 256);
  const double table = static_cast<double>(sub.table_steps) * step_table_bytes(1000, 256);
  CHECK(table <= kTableBytes);
  CHECK(sub.table_steps >= 1);
  // Sized by the longest epoch, the same table would need 31,250 steps: 32 GB.
  CHECK(31'250 * step_table_bytes(1000, 256) > 30e9);
  // Small groups get a table for their whole epoch.
  CHECK(table_steps(10, 256, 8) == 8);
}

TEST_CASE("sub-groups fit the budget, keep job order, and name an adapter too big to fit alone") {
  std::vector<AdapterShape> shapes(10, AdapterShape{1000, 900, 100, 1});
  const double one = adapter_bytes(64, 0, 4, shapes[0], 100) + step_table_bytes(1, 100);
  const double budget = 2 * kTableBytes + 3.5 * one;
  const auto g = plan_subgroups(64, 0, 4, shapes, budget);
  REQUIRE(g.groups.size() == 4);
  CHECK(g.groups[0].members == std::vector<int>{0, 1, 2});
  CHECK(g.groups[3].members == std::vector<int>{9});
  for (const auto& sub : g.groups) CHECK(sub.bytes <= budget);
  // Row indices are 32-bit: a sub-group never holds more rows than max_rows.
  const auto by_rows = plan_subgroups(64, 0, 4, shapes, 1e15, 2500);
  CHECK(by_rows.groups.size() == 5);
  shapes[4].rows = 100'000'000;
  const auto big = plan_subgroups(64, 0, 4, shapes, budget);
  CHECK(big.too_big == 4);
  CHECK(big.too_big_bytes > budget);
}

TEST_CASE("Adam's corrections are those of the float betas the update uses, not of 0.9 and 0.999") {
  const std::vector<AdapterShape> shapes = {{20, 20, 4, 1}};
  const auto r = replay(shapes, 10);
  // Step 1: 1/(1 - 0.9) = 10 exactly, but 1/(1 - 0.9f) = 9.99999762 (as the CPU computes it).
  CHECK(r.corr1.at(0).at(0) != 10.0f);
  CHECK(r.corr1.at(0).at(0) == static_cast<float>(1.0 / (1.0 - static_cast<double>(0.9f))));
}

TEST_CASE("adapters sharing one dataset are budgeted for one copy of it") {
  // 100 adapters on one 2 GB dataset (d = 768) fit in 4 GB as one sub-group; on 100 datasets they would not.
  std::vector<AdapterShape> shared(100, AdapterShape{650'000, 585'000, 256, 10, 65'000, 0});
  const double data = dataset_bytes(768, shared[0]);
  CHECK(data > 1.9e9);
  const auto g = plan_subgroups(768, 0, 8, shared, 4e9);
  REQUIRE(g.too_big < 0);
  REQUIRE(g.groups.size() == 1);
  CHECK(g.groups[0].members.size() == 100);
  CHECK(g.groups[0].bytes < data + 100 * own_bytes(768, 0, 8, shared[0], 256) + 3 * kTableBytes);
  // The same adapters, each on a dataset of its own: one per sub-group.
  auto own = shared;
  for (int i = 0; i < 100; ++i) own[static_cast<std::size_t>(i)].data = i;
  CHECK(plan_subgroups(768, 0, 8, own, 4e9).groups.size() == 100);
  // Rows count once as well: 32-bit row indices limit distinct rows, not adapters.
  CHECK(plan_subgroups(768, 0, 8, shared, 1e15, 1'000'000).groups.size() == 1);
  CHECK(plan_subgroups(768, 0, 8, own, 1e15, 1'000'000).groups.size() == 100);
  // Two datasets interleaved: each counted once in the sub-group that holds both.
  std::vector<AdapterShape> two(10, AdapterShape{1000, 900, 100, 1, 100, 0});
  for (std::size_t i = 1; i < two.size(); i += 2) two[i].data = 1;
  const auto g2 = plan_subgroups(64, 0, 4, two, 1e12);
  REQUIRE(g2.groups.size() == 1);
  CHECK(g2.groups[0].bytes == doctest::Approx(2 * kTableBytes + 2 * dataset_bytes(64, two[0]) +
                                               10 * (own_bytes(64, 0, 4, two[0], 100) + step_table_bytes(1, 100))));
}
