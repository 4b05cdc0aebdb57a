/// @file hyperparameters.hpp
/// The training hyperparameters of one adapter, declared once: the trainer's `AdapterSpec` is built on
/// them and a catalog entry embeds them. One validator (`problems()`), one reader of their JSON form
/// (`read_json`), one writer (`to_json`, `params`). Every integer is 64-bit and bounded by a named limit,
/// so no value is truncated on its way to the trainer and no value starts work that cannot finish.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace mlops {

/// The optimisers the trainer implements (CPU and GPU alike).
enum class Optimizer : std::int32_t {
  adam = 0,  ///< Adam (beta1 0.9, beta2 0.999, eps 1e-8)
  sgd = 1,   ///< SGD with momentum (`Hyperparameters::momentum`)
};

/// The optimiser's name as written in catalogs, params and Python ("adam", "sgd").
[[nodiscard]] std::string_view to_string(Optimizer o) noexcept;
/// The optimiser named `name`, or nothing for an unknown name.
[[nodiscard]] std::optional<Optimizer> parse_optimizer(std::string_view name) noexcept;
/// Every optimiser's name, in enum order (for messages and documentation).
[[nodiscard]] const std::vector<std::string>& optimizer_names();

/// Training hyperparameters of one adapter, with the trainer's defaults.
struct Hyperparameters {
  /// Upper bounds, each named in the message that refuses a larger value. Together they keep every
  /// count inside 64 bits and a single adapter's parameters far inside device memory.
  static constexpr std::int64_t kMaxHidden = 65'536;          ///< hidden units
  static constexpr std::int64_t kMaxEpochs = 100'000;         ///< epochs (and patience)
  static constexpr std::int64_t kMaxBatchSize = 16'777'216;   ///< rows per mini-batch (2^24)
  static constexpr double kMaxLearningRate = 1e6;
  static constexpr double kMaxL2 = 1e6;

  std::int64_t hidden = 0;             ///< 0: softmax classifier; h in [1, kMaxHidden]: one hidden ReLU layer
  std::int64_t epochs = 10;            ///< in [1, kMaxEpochs]
  std::int64_t batch_size = 256;       ///< in [1, kMaxBatchSize]; a batch never exceeds the training rows
  double learning_rate = 1e-3;         ///< in (0, kMaxLearningRate]
  double l2 = 1e-4;                    ///< in [0, kMaxL2], L2 penalty on weights (not biases)
  double validation_fraction = 0.1;    ///< in [0, 1): share of rows held out for validation
  Optimizer optimizer = Optimizer::adam;
  double momentum = 0.9;               ///< in [0, 1), used by SGD
  std::int64_t patience = 0;           ///< in [0, kMaxEpochs]: stop after this many epochs without a better val_loss; 0 = off
  std::vector<double> class_weights;   ///< one finite weight > 0 per class, or empty for none

  /// Every problem with these values, one line each ("field 'epochs': must be >= 1, got 0"); empty when
  /// valid. The number of class weights is checked against a dataset by `AdapterSpec::validate`.
  [[nodiscard]] std::vector<std::string> problems() const;
  /// @throws ConfigError naming `who` and every problem
  void validate(const std::string& who) const;

  /// Reads the hyperparameter fields of a JSON object on top of the current values (other keys are left
  /// alone; `is_field` tells them apart). A value of the wrong type is appended to `problems` and leaves the
  /// field unchanged; ranges are `problems()`'s concern.
  void read_json(const nlohmann::json& fields, std::vector<std::string>& problems);
  /// Whether `key` names a hyperparameter field.
  [[nodiscard]] static bool is_field(std::string_view key) noexcept;

  /// Every field as JSON (numbers as numbers, the optimiser by name), keys sorted.
  [[nodiscard]] nlohmann::json to_json() const;
  /// Every field as a flat, deterministic string map (for MLflow params and change detection). Numbers
  /// are written in their shortest round-trip form; class_weights as "[w0,w1,...]".
  [[nodiscard]] std::map<std::string, std::string> params() const;

  bool operator==(const Hyperparameters&) const = default;
};

}  // namespace mlops
