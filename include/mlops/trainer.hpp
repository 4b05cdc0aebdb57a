/// @file trainer.hpp
/// Batched training of many adapters at once: `CudaTrainer::fit` takes a list of `AdapterSpec`s (each
/// naming its own Dataset and hyperparameters) and trains them all together, on a GPU through the
/// separately loaded CUDA module (its own fixed-order batched GEMMs, fused kernels, a CUDA graph per step) or on the
/// CPU (OpenBLAS, adapters spread over threads).
///
/// Training, per adapter: the rows are shuffled with a generator seeded from (trainer seed, adapter name);
/// the first `validation_fraction` of them form the validation set, the rest the training set. Weights
/// start at zero (softmax) or He/Glorot-uniform draws from the same generator (MLP). Each epoch visits the
/// training rows in a fresh shuffled order in mini-batches of `batch_size`; the loss minimised per batch is
///   sum_i w[y_i] * CE(p_i, y_i) / B  +  l2/2 * (sum of squared weights, biases excluded)
/// with w = class_weights (all 1 when empty). Because every random choice depends only on the seed and the
/// adapter's name, an adapter trained inside a batch of 100 gets the same weights as trained alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlops/adapter.hpp"
#include "mlops/dataset.hpp"
#include "mlops/hyperparameters.hpp"

namespace mlops {

/// What to train: one adapter's dataset and its hyperparameters (the fields of `Hyperparameters`:
/// hidden, epochs, batch_size, learning_rate, l2, validation_fraction, optimizer, momentum, patience,
/// class_weights; `params()` and `to_json()` give them as recorded).
struct AdapterSpec : Hyperparameters {
  std::string name;                    ///< unique within one fit(); names the adapter in errors and callbacks
  Dataset dataset;                     ///< training data (the validation split is drawn from it)
  std::string code_commit;             ///< commit of the code that trains (goes into the lineage)

  /// The hyperparameters as a JSON object (numbers as numbers); the same as `to_json()`.
  [[nodiscard]] nlohmann::json params_json() const { return to_json(); }
  /// Checks the hyperparameters (`Hyperparameters::problems`) and the dataset (rows, classes, one class
  /// weight per class, the validation split leaving training rows; values were checked when the Dataset was
  /// made and are not scanned again).
  /// @throws ConfigError for a bad hyperparameter, DataError for bad data; the message names the adapter
  ///         and the field
  void validate() const;
};

/// Metrics of one epoch of one adapter. val_* are NaN when validation_fraction is 0.
struct EpochMetrics {
  int epoch = 0;                 ///< 1-based
  /// training loss: mean over the epoch's rows of w[y]·CE (each taken when its batch was trained) plus
  /// l2/2·‖weights‖² at the end of the epoch
  double loss = 0;
  double val_loss = 0;           ///< mean cross-entropy on the validation rows
  double val_accuracy = 0;       ///< share of validation rows classified correctly, in [0, 1]
};

/// The per-epoch metrics of one adapter, in order.
struct History {
  std::vector<EpochMetrics> epochs;
  /// 1-based epoch whose weights the adapter holds (the best val_loss with early stopping, else the last).
  int best_epoch = 0;
  bool stopped_early = false;
};

/// The result of training one adapter.
struct TrainedAdapter {
  std::string name;
  Adapter adapter;
  History history;
  nlohmann::json lineage;        ///< dataset lineage + code_commit + device + seed + trainer
  std::string device;            ///< the device that trained it, e.g. "cpu" or "cuda:0 (NVIDIA H100)"
  /// What the backend wants the caller to know about this fit that is not an error, e.g. a GPU training
  /// step that could not be captured as a CUDA graph and ran as direct launches (same results, slower),
  /// or a group that was split into sub-groups to fit device memory. Empty on the CPU.
  std::vector<std::string> notes;
};

/// Options of a CudaTrainer.
struct TrainerOptions {
  /// "auto" (a usable GPU, else the CPU), "cpu", "cuda" (= "cuda:0") or "cuda:N".
  std::string device = "auto";
  std::uint64_t seed = 0;
  /// CPU worker threads (0 = hardware concurrency). Weights are bit-identical for one seed and thread count.
  unsigned threads = 0;
  /// Must be true (ConfigError otherwise). Every backend is deterministic: the CPU backend always was; on
  /// the GPU no kernel of the trainer uses atomics and every sum has a fixed order, so weights repeat run
  /// after run on one GPU, and an adapter gets the same weights alone as inside any batch. A non-deterministic mode would buy nothing measurable for these shapes (the GEMMs are
  /// memory-bound with small inner dimensions), so none is offered.
  bool deterministic = true;
  /// GPU: bytes of device memory one fit may use for data, weights and workspace; 0 = 92 % of what is free
  /// when the fit starts, less 256 MiB. Adapters that do not fit together train in consecutive sub-groups;
  /// one that does not fit alone is a DeviceError naming the sizes.
  std::uint64_t device_memory_limit = 0;
  /// Whether front ends show a progress bar over all steps (the Python bindings use tqdm). The C++ core only
  /// reports progress through fit()'s ProgressCallback.
  bool progress = true;
};

/// Called on the thread that called fit(), once per adapter and epoch: in epoch order for each adapter;
/// across adapters in the order their epochs finish. An exception thrown from it stops training and is
/// rethrown by fit().
using EpochCallback = std::function<void(const std::string& name, int epoch, const EpochMetrics& metrics)>;
/// Called on the caller's thread as training progresses: steps done and steps planned (all adapters; a
/// step of one adapter is one mini-batch). The total shrinks when adapters stop early.
using ProgressCallback = std::function<void(std::size_t done, std::size_t total)>;

/// Trains many adapters together. Thread-compatible: one fit() at a time per trainer.
class CudaTrainer {
 public:
  /// Chooses the device now.
  /// @throws DeviceError for "cuda"/"cuda:N" without a usable GPU (the message says why), ConfigError for
  ///         an unknown device string
  explicit CudaTrainer(TrainerOptions options = {});
  ~CudaTrainer();
  CudaTrainer(CudaTrainer&&) noexcept;
  CudaTrainer& operator=(CudaTrainer&&) noexcept;

  /// The chosen device, e.g. "cpu" or "cuda:0 (NVIDIA H100 80GB HBM3)".
  [[nodiscard]] const std::string& device() const noexcept;
  /// Why this device was chosen (for "auto": which GPU, or why the CPU).
  [[nodiscard]] const std::string& device_reason() const noexcept;
  [[nodiscard]] const TrainerOptions& options() const noexcept;

  /// Total mini-batch steps that fit(specs) plans (before early stopping); for progress bars.
  [[nodiscard]] static std::size_t planned_steps(const std::vector<AdapterSpec>& specs);

  /// Validates every spec (names unique and non-empty, hyperparameters, data), then trains all of them.
  /// @returns one TrainedAdapter per spec, in spec order
  /// @throws ConfigError/DataError before any training for bad input (naming adapter and field);
  ///         DeviceError for a device failure or out-of-memory (with the sizes involved)
  std::vector<TrainedAdapter> fit(const std::vector<AdapterSpec>& specs, const EpochCallback& on_epoch = {},
                                  const ProgressCallback& on_progress = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mlops
