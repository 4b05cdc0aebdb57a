#include "trainer/plan.hpp"

#include <algorithm>
#include <cmath>

namespace mlops::detail {

namespace {

std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

// Independent sub-streams of one adapter's stream: the split, the initial weights, each epoch's order.
std::uint64_t substream(std::uint64_t stream, std::uint64_t tag) {
  return SplitMix64(stream ^ (tag * 0xD1B54A32D192ED03ULL)).next();
}

constexpr std::uint64_t kSplitTag = 1, kInitTag = 2, kEpochTag = 1000;

void shuffle(std::uint32_t* v, std::size_t n, SplitMix64& rng) noexcept {
  for (std::size_t i = n; i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
}

void shuffle(std::vector<std::uint32_t>& v, SplitMix64& rng) noexcept { shuffle(v.data(), v.size(), rng); }

void fill_uniform(float* out, std::size_t n, double limit, SplitMix64& rng) {
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>((2.0 * rng.uniform() - 1.0) * limit);
}

}  // namespace

void AdapterPlan::epoch_order(int epoch, std::vector<std::uint32_t>& out) const {
  out.resize(train_rows.size());
  epoch_order(epoch, out.data());
}

void AdapterPlan::epoch_order(int epoch, std::uint32_t* out) const noexcept {
  std::copy(train_rows.begin(), train_rows.end(), out);
  SplitMix64 rng(substream(stream, kEpochTag + static_cast<std::uint64_t>(epoch)));
  shuffle(out, train_rows.size(), rng);
}

AdapterPlan make_plan(const AdapterSpec& spec, std::size_t index, std::uint64_t seed) {
  AdapterPlan p;
  p.index = index;
  p.spec = &spec;
  const auto& ds = spec.dataset;
  p.layout = ParamLayout{ds.cols(), static_cast<std::size_t>(spec.hidden), ds.classes().size()};
  p.stream = SplitMix64(seed ^ fnv1a(spec.name)).next();

  const std::size_t n = ds.rows();
  std::vector<std::uint32_t> all(n);
  for (std::size_t i = 0; i < n; ++i) all[i] = static_cast<std::uint32_t>(i);
  SplitMix64 split(substream(p.stream, kSplitTag));
  shuffle(all, split);
  std::size_t n_val = static_cast<std::size_t>(std::floor(static_cast<double>(n) * spec.validation_fraction));
  if (spec.validation_fraction > 0 && n_val == 0) n_val = 1;
  p.val_rows.assign(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n_val));
  p.train_rows.assign(all.begin() + static_cast<std::ptrdiff_t>(n_val), all.end());
  std::sort(p.val_rows.begin(), p.val_rows.end());
  std::sort(p.train_rows.begin(), p.train_rows.end());
  const auto batch = static_cast<std::size_t>(spec.batch_size);
  p.steps_per_epoch = (p.train_rows.size() + batch - 1) / batch;

  const auto& L = p.layout;
  p.init_params.assign(L.size(), 0.0f);
  if (L.h > 0) {
    SplitMix64 init(substream(p.stream, kInitTag));
    fill_uniform(p.init_params.data() + L.w1(), L.d * L.h, std::sqrt(6.0 / static_cast<double>(L.d)), init);
    fill_uniform(p.init_params.data() + L.w2(), L.h * L.k, std::sqrt(6.0 / static_cast<double>(L.h + L.k)), init);
  }
  p.class_weights.assign(L.k, 1.0f);
  for (std::size_t c = 0; c < spec.class_weights.size() && c < L.k; ++c)
    p.class_weights[c] = static_cast<float>(spec.class_weights[c]);
  return p;
}

EpochTracker::Decision EpochTracker::record(const EpochMetrics& m) {
  Decision d;
  history_.epochs.push_back(m);
  if (use_kept()) {
    if (history_.epochs.size() == 1 || m.val_loss < best_) {
      best_ = m.val_loss;
      since_best_ = 0;
      d.keep = true;
      history_.best_epoch = m.epoch;
    } else if (++since_best_ >= patience_) {
      d.stop = true;
      history_.stopped_early = m.epoch < epochs_;
    }
  } else {
    history_.best_epoch = m.epoch;
  }
  if (m.epoch >= epochs_) d.stop = true;
  return d;
}

}  // namespace mlops::detail
