// What every backend shares: the per-adapter plan (split, row orders, initial weights, parameter layout)
// and the per-epoch bookkeeping (history, early stopping). Both backends follow it exactly, so the CPU
// and the GPU visit the same rows in the same order from the same starting weights.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mlops/trainer.hpp"

namespace mlops::detail {

/// Where each tensor sits in an adapter's flat parameter vector.
struct ParamLayout {
  std::size_t d = 0, h = 0, k = 0;
  [[nodiscard]] std::size_t size() const { return h == 0 ? d * k + k : d * h + h + h * k + k; }
  // hidden == 0: W at 0, b at d*k.  hidden > 0: W1 at 0, b1 at d*h, W2 at d*h+h, b2 at d*h+h+h*k.
  [[nodiscard]] std::size_t w1() const { return 0; }
  [[nodiscard]] std::size_t b1() const { return d * (h == 0 ? k : h); }
  [[nodiscard]] std::size_t w2() const { return d * h + h; }
  [[nodiscard]] std::size_t b2() const { return h == 0 ? d * k : d * h + h + h * k; }
  /// True when flat index i is a bias (no L2 on biases).
  [[nodiscard]] bool is_bias(std::size_t i) const {
    if (h == 0) return i >= d * k;
    return (i >= d * h && i < d * h + h) || i >= d * h + h + h * k;
  }
};

/// A small, fast, reproducible generator (SplitMix64).
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, n).
  std::uint64_t below(std::uint64_t n) {
    const auto v = static_cast<std::uint64_t>(uniform() * static_cast<double>(n));
    return v < n ? v : n - 1;
  }
  /// Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  std::uint64_t state_;
};

/// The plan of one adapter; the spec and its dataset must outlive it.
struct AdapterPlan {
  std::size_t index = 0;                 ///< position in the specs given to fit()
  const AdapterSpec* spec = nullptr;
  ParamLayout layout;
  std::uint64_t stream = 0;              ///< seed of this adapter's generators (trainer seed, name)
  std::vector<std::uint32_t> train_rows; ///< dataset rows used for training
  std::vector<std::uint32_t> val_rows;   ///< dataset rows held out
  std::vector<float> init_params;        ///< layout.size() initial weights
  std::vector<float> class_weights;      ///< k weights (1 when none)
  std::size_t steps_per_epoch = 0;       ///< ceil(train rows / batch_size)

  /// The training rows in the order epoch `epoch` (1-based) visits them.
  void epoch_order(int epoch, std::vector<std::uint32_t>& out) const;
  /// The same into out[0 .. train_rows.size()); never allocates or throws.
  void epoch_order(int epoch, std::uint32_t* out) const noexcept;
};

/// Builds the plan of spec `index`, for trainer seed `seed`. The spec must be valid.
AdapterPlan make_plan(const AdapterSpec& spec, std::size_t index, std::uint64_t seed);

/// Epoch bookkeeping shared by the backends: records metrics, decides early stopping and which
/// weights to keep.
class EpochTracker {
 public:
  explicit EpochTracker(const AdapterSpec& spec, bool has_validation)
      : patience_(static_cast<int>(spec.patience)), epochs_(static_cast<int>(spec.epochs)), has_val_(has_validation) {}
  struct Decision {
    bool keep = false;  ///< these weights are the best so far: keep a copy
    bool stop = false;  ///< no more epochs for this adapter
  };
  Decision record(const EpochMetrics& m);
  [[nodiscard]] const History& history() const { return history_; }
  /// Whether the final weights should be the kept copy rather than the last ones.
  [[nodiscard]] bool use_kept() const { return patience_ > 0 && has_val_; }

 private:
  int patience_;
  int epochs_;
  bool has_val_;
  double best_ = 0;
  int since_best_ = 0;
  History history_;
};

}  // namespace mlops::detail
