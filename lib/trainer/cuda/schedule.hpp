// The host-side decisions of the CUDA backend, as plain C++ that the CPU tests exercise: how adapters of
// one shape are split into sub-groups that fit the device, how many steps a step table holds, and which
// rows every adapter visits in every step of a chunk. module.cu runs exactly this code; only the launches
// are its own.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "core/parallel.hpp"
#include "trainer/adam.hpp"

namespace mlops::cuda_schedule {

/// A step table (rows, counts, Adam corrections of every adapter) never holds more than this many bytes,
/// on the device or in pinned host memory, whatever the number of steps per epoch.
constexpr double kTableBytes = 64.0 * (1 << 20);

/// Rows, batch and epochs of one adapter, as the schedule needs them.
struct AdapterShape {
  long long rows = 0;     ///< dataset rows (resident on the device)
  long long n_train = 0;  ///< rows visited per epoch
  long long batch = 1;    ///< rows per step (<= n_train)
  long long epochs = 1;
  long long n_val = 0;    ///< validation rows (their indices are resident on the device)
  int data = -1;          ///< adapters with the same data >= 0 share one dataset, uploaded and counted once
};

inline long long steps_per_epoch(const AdapterShape& a) { return (a.n_train + a.batch - 1) / a.batch; }

/// Bytes of one step's table: a row index per slot, and a count and two corrections per adapter.
inline double step_table_bytes(long long adapters, long long largest_batch) {
  return static_cast<double>(adapters) * (static_cast<double>(largest_batch) * 4.0 + 12.0);
}

/// How many steps one table holds: the most steps any chunk can need (the longest epoch), capped so that
/// the table stays within kTableBytes; at least one step.
inline long long table_steps(long long adapters, long long largest_batch, long long longest_epoch) {
  const double per_step = step_table_bytes(adapters, largest_batch);
  const auto fit = static_cast<long long>(std::floor(kTableBytes / per_step));
  return std::max(1LL, std::min(longest_epoch, fit));
}

/// Device bytes of one adapter's dataset (X and y), shared by every adapter of that dataset.
inline double dataset_bytes(long long d, const AdapterShape& a) {
  return static_cast<double>(a.rows) * (static_cast<double>(d) * 4.0 + 4.0);
}

/// Device bytes one adapter needs while its sub-group trains, besides the step tables and its dataset:
/// its validation row indices, its parameters and optimiser state (5 copies), and its share of the step
/// workspace (row losses in double).
inline double own_bytes(long long d, long long h, long long k, const AdapterShape& a, long long largest_batch) {
  const double P = h == 0 ? d * k + k : d * h + h + h * k + k;
  return static_cast<double>(a.n_val) * 4.0 + P * 5 * 4.0 +
         static_cast<double>(largest_batch) * (static_cast<double>(d) + 2.0 * h + k + 6.0) * 4.0 + 128.0;
}

/// Device bytes of an adapter with a dataset of its own.
inline double adapter_bytes(long long d, long long h, long long k, const AdapterShape& a, long long largest_batch) {
  return dataset_bytes(d, a) + own_bytes(d, h, k, a, largest_batch);
}

/// Adapters that train together, with the largest batch among them (which sets the GEMM shapes).
struct SubGroup {
  std::vector<int> members;  ///< indices into the job's adapters, in job order
  long long largest_batch = 1;
  long long table_steps = 1;
  double bytes = 0;  ///< device bytes, tables included
};

/// The sub-grouping, or the first adapter that cannot fit alone.
struct Grouping {
  std::vector<SubGroup> groups;
  int too_big = -1;     ///< >= 0: this adapter alone needs `too_big_bytes` > budget
  double too_big_bytes = 0;
};

/// Splits adapters (in job order) into consecutive sub-groups whose resident bytes fit `budget`, each at
/// most `max_rows` dataset rows (row indices are 32-bit). Each adapter's bytes are counted at the largest
/// batch of the whole job, so that whether an adapter shares a sub-group does not depend on its
/// neighbours' batches; the tables count once per sub-group, and so does a dataset that several of its
/// adapters share.
inline Grouping plan_subgroups(long long d, long long h, long long k, const std::vector<AdapterShape>& adapters,
                               double budget, long long max_rows = 0x7FFFFFFF) {
  Grouping out;
  long long batch_all = 1;
  for (const auto& a : adapters) batch_all = std::max(batch_all, a.batch);
  const double tables = 2.0 * kTableBytes;  // device tables + slack for one step larger than the cap
  std::size_t begin = 0;
  while (begin < adapters.size()) {
    SubGroup g;
    double used = tables;
    long long rows = 0;
    std::unordered_set<int> datasets;  // those already resident in this sub-group
    for (std::size_t i = begin; i < adapters.size(); ++i) {
      const auto& a = adapters[i];
      const bool shared = a.data >= 0 && datasets.count(a.data) > 0;
      const long long new_rows = shared ? 0 : a.rows;
      const double need =
          (shared ? 0.0 : dataset_bytes(d, a)) + own_bytes(d, h, k, a, batch_all) + step_table_bytes(1, batch_all);
      if (!g.members.empty() && (used + need > budget || rows + new_rows > max_rows)) break;
      if (g.members.empty() && used + need > budget) {
        out.too_big = static_cast<int>(i);
        out.too_big_bytes = used + need;
        return out;
      }
      g.members.push_back(static_cast<int>(i));
      used += need;
      rows += new_rows;
      if (a.data >= 0) datasets.insert(a.data);
    }
    long long longest = 1;
    for (int i : g.members) {
      g.largest_batch = std::max(g.largest_batch, adapters[static_cast<std::size_t>(i)].batch);
      longest = std::max(longest, steps_per_epoch(adapters[static_cast<std::size_t>(i)]));
    }
    g.table_steps = table_steps(static_cast<long long>(g.members.size()), g.largest_batch, longest);
    g.bytes = used;
    begin += g.members.size();
    out.groups.push_back(std::move(g));
  }
  return out;
}

/// Runs fn(i) for i in [0, n) on up to `threads` host threads (one when n is small); rethrows the first
/// exception.
template <typename Fn>
void parallel_for(int n, unsigned threads, Fn&& fn) {
  mlops::detail::parallel_for(static_cast<std::size_t>(std::max(n, 0)), n < 64 ? 1U : std::max(1U, threads),
                              [&](std::size_t i) { fn(static_cast<int>(i)); });
}

/// The step tables of one sub-group, chunk by chunk. A chunk is at most `table_steps` steps and never
/// crosses the epoch boundary of an adapter that trains in it, so every adapter's epoch ends at the end of
/// some chunk, where the caller evaluates it. The next chunk can be filled while the device still runs the
/// current one: the only thing not known in advance is an adapter stopped by its epoch callback, and
/// `stop` takes it out of the chunk already filled.
class StepSchedule {
 public:
  /// Writes the n_train row numbers (within the adapter's dataset) that `epoch` (1-based) visits.
  using EpochOrder = std::function<void(int adapter, int epoch, std::uint32_t* out)>;

  /// `row_offset[a]` is added to every row of adapter a (its data's place in the device buffer).
  StepSchedule(std::vector<AdapterShape> adapters, std::vector<long long> row_offset, long long largest_batch,
               long long table_steps, EpochOrder order, unsigned threads = 8)
      : a_(std::move(adapters)), off_(std::move(row_offset)), Bm_(largest_batch), cap_(table_steps),
        order_(std::move(order)), threads_(threads), st_(a_.size()) {
    for (std::size_t i = 0; i < a_.size(); ++i) {
      st_[i].spe = steps_per_epoch(a_[i]);
      st_[i].rows.resize(static_cast<std::size_t>(a_[i].n_train));
    }
  }

  [[nodiscard]] int adapters() const { return static_cast<int>(a_.size()); }
  [[nodiscard]] long long slots() const { return static_cast<long long>(a_.size()) * Bm_; }
  [[nodiscard]] long long capacity() const { return cap_; }

  /// An adapter whose epoch ends with a chunk, and that epoch's number.
  struct Boundary {
    int adapter;
    int epoch;
  };
  /// A filled chunk: its length and which epochs end with it.
  struct Chunk {
    long long steps = 0;          ///< 0: nothing left to train
    long long adapter_steps = 0;  ///< mini-batch steps of all adapters in it (for progress)
    std::vector<Boundary> ends;
  };

  /// Fills the next chunk into idx (capacity()×slots(): row per slot, -1 for padding), cnt (capacity()×
  /// adapters(): rows per adapter and step) and corr (capacity()×adapters()×2: Adam's 1/(1-β1^t),
  /// 1/(1-β2^t)). Step c, adapter a, slot r sit at idx[(c*adapters() + a)*Bm + r], cnt[c*adapters() + a].
  const Chunk& fill(int* idx, int* cnt, float* corr) {
    idx_ = idx, cnt_ = cnt, corr_ = corr;
    chunk_ = Chunk{};
    long long steps = -1;
    for (const auto& s : st_)
      if (s.active) steps = steps < 0 ? s.spe - g_ % s.spe : std::min(steps, s.spe - g_ % s.spe);
    if (steps < 0) return chunk_;
    steps = std::min(steps, cap_);
    chunk_.steps = steps;
    const int S = adapters();
    parallel_for(S, threads_, [&](int a) { fill_one(a, steps); });
    g_ += steps;
    for (int a = 0; a < S; ++a) {
      auto& s = st_[static_cast<std::size_t>(a)];
      if (!s.active) continue;
      chunk_.adapter_steps += steps;
      if (g_ % s.spe == 0) {
        chunk_.ends.push_back({a, s.started});
        if (s.started >= a_[static_cast<std::size_t>(a)].epochs) s.active = false;  // its last epoch
      }
    }
    return chunk_;
  }

  /// Adapter a trains no further: it is taken out of the chunk filled last (its rows become padding, its
  /// epoch end is dropped) and out of every later chunk.
  void stop(int a) {
    auto& s = st_[static_cast<std::size_t>(a)];
    const bool in_chunk = s.in_chunk;
    s.active = false;
    s.in_chunk = false;
    if (!in_chunk || chunk_.steps == 0) return;
    const int S = adapters();
    for (long long c = 0; c < chunk_.steps; ++c) {
      std::fill_n(idx_ + (c * S + a) * Bm_, Bm_, -1);
      cnt_[c * S + a] = 0;
      corr_[(c * S + a) * 2] = corr_[(c * S + a) * 2 + 1] = 1.0f;
    }
    chunk_.adapter_steps -= chunk_.steps;
    chunk_.ends.erase(std::remove_if(chunk_.ends.begin(), chunk_.ends.end(),
                                     [a](const Boundary& b) { return b.adapter == a; }),
                      chunk_.ends.end());
  }

  /// The chunk filled last (after any `stop`).
  [[nodiscard]] const Chunk& chunk() const { return chunk_; }

 private:
  struct State {
    long long spe = 1;
    int started = 0;    // epochs begun
    long long t = 0;    // optimiser steps
    bool active = true;
    bool in_chunk = false;
    std::vector<std::uint32_t> rows;  // this epoch's order
  };

  void fill_one(int a, long long steps) {
    auto& s = st_[static_cast<std::size_t>(a)];
    const auto& ad = a_[static_cast<std::size_t>(a)];
    const int S = adapters();
    s.in_chunk = s.active;
    if (s.active && g_ % s.spe == 0) order_(a, ++s.started, s.rows.data());
    for (long long c = 0; c < steps; ++c) {
      int* idx = idx_ + (c * S + a) * Bm_;
      int n = 0;
      float* corr = corr_ + (c * S + a) * 2;
      if (s.active) {
        const long long begin = ((g_ + c) % s.spe) * ad.batch;
        n = static_cast<int>(std::min(ad.batch, ad.n_train - begin));
        for (int r = 0; r < n; ++r)
          idx[r] = static_cast<int>(off_[static_cast<std::size_t>(a)] + s.rows[static_cast<std::size_t>(begin + r)]);
        s.t += 1;
        corr[0] = adam::correction(adam::kBeta1, s.t);
        corr[1] = adam::correction(adam::kBeta2, s.t);
      } else {
        corr[0] = corr[1] = 1.0f;
      }
      std::fill(idx + n, idx + Bm_, -1);
      cnt_[c * S + a] = n;
    }
  }

  std::vector<AdapterShape> a_;
  std::vector<long long> off_;
  long long Bm_;
  long long cap_;
  EpochOrder order_;
  unsigned threads_;
  std::vector<State> st_;
  long long g_ = 0;  // steps of this sub-group so far
  Chunk chunk_;
  int* idx_ = nullptr;
  int* cnt_ = nullptr;
  float* corr_ = nullptr;
};

}  // namespace mlops::cuda_schedule
