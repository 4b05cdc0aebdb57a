/// @file adapter.hpp
/// A trained adapter: a softmax classifier (`hidden == 0`) or a one-hidden-layer ReLU MLP (`hidden > 0`)
/// over a dataset's features, with its class labels, featurizer settings, hyperparameters and lineage.
///
/// Shapes (row-major float32, as everywhere in mlops): d = features, h = hidden units, k = classes.
///   hidden == 0: W [d, k], b [k];                    p = softmax(X @ W + b)
///   hidden  > 0: W1 [d, h], b1 [h], W2 [h, k], b2 [k]; p = softmax(relu(X @ W1 + b1) @ W2 + b2)
/// The predicted class of a row is classes[argmax p] (the first index on ties).
///
/// File format (safetensors, "mlops.adapter.v1"): the tensors above, float32 little-endian, and string
/// metadata `format`, `classes` (JSON list), `hidden` (decimal), `featurizer` (JSON object), `spec`
/// (JSON of hyperparameters), `lineage` (JSON object), and `checksum` ("sha256:" + hex SHA-256 of the
/// tensor bytes followed by every other metadata entry in key order, each as key NUL value NUL), which
/// load() verifies. Readable by the `safetensors` Python package.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mlops {

/// Class indices and probabilities for a set of rows.
struct Prediction {
  std::vector<std::int32_t> indices;   ///< rows class indices (argmax of each row's probabilities)
  std::vector<std::string> labels;     ///< rows class labels: classes[indices[i]]
  std::vector<float> probabilities;    ///< rows×k row-major, each row sums to 1
};

/// The weights and metadata of one trained classifier. A value type: copying copies the weights.
class Adapter {
 public:
  Adapter() = default;

  /// Builds an adapter from weights; checks every shape.
  /// @param features d; @param hidden h (0 = softmax classifier); @param classes k labels (k >= 2)
  /// @param weights W,b (hidden == 0) or W1,b1,W2,b2 concatenated in that order, row-major
  /// @throws DataError if a size does not match the shapes or a value is not finite
  Adapter(std::size_t features, std::size_t hidden, std::vector<std::string> classes, std::vector<float> weights,
          nlohmann::json featurizer = nlohmann::json::object(), nlohmann::json spec = nlohmann::json::object(),
          nlohmann::json lineage = nlohmann::json::object());

  [[nodiscard]] std::size_t features() const noexcept { return features_; }
  [[nodiscard]] std::size_t hidden() const noexcept { return hidden_; }
  [[nodiscard]] std::size_t num_classes() const noexcept { return classes_.size(); }
  [[nodiscard]] const std::vector<std::string>& classes() const noexcept { return classes_; }
  /// All parameters, in the order W,b or W1,b1,W2,b2 (row-major).
  [[nodiscard]] std::span<const float> weights() const noexcept { return weights_; }
  /// One named tensor ("W", "b" or "W1", "b1", "W2", "b2") and its shape.
  /// @throws NotFoundError for a name this adapter does not have
  [[nodiscard]] std::span<const float> tensor(const std::string& name, std::vector<std::size_t>* shape = nullptr) const;
  /// Names of this adapter's tensors in file order.
  [[nodiscard]] std::vector<std::string> tensor_names() const;
  [[nodiscard]] const nlohmann::json& featurizer() const noexcept { return featurizer_; }
  [[nodiscard]] const nlohmann::json& spec() const noexcept { return spec_; }
  [[nodiscard]] const nlohmann::json& lineage() const noexcept { return lineage_; }

  /// Class probabilities of `rows` rows of X (row-major rows×features()).
  /// @returns rows×k row-major probabilities
  /// @throws DataError if X.size() != rows*features()
  [[nodiscard]] std::vector<float> predict_proba(std::span<const float> X, std::size_t rows) const;
  /// Class indices, labels and probabilities of `rows` rows of X.
  [[nodiscard]] Prediction predict(std::span<const float> X, std::size_t rows) const;

  /// Probabilities of the same rows under many adapters at once (all must have X's width), spread over
  /// `threads` threads (0 = hardware concurrency). Result i belongs to adapters[i].
  /// @throws DataError naming the adapter whose width differs
  [[nodiscard]] static std::vector<std::vector<float>> predict_proba_many(std::span<const Adapter* const> adapters,
                                                                          std::span<const float> X, std::size_t rows,
                                                                          unsigned threads = 0);

  /// Writes the safetensors file atomically (readers see the old file or the whole new one).
  /// @throws ConfigError if the file cannot be written
  void save(const std::filesystem::path& path) const;
  /// The safetensors bytes `save` writes.
  [[nodiscard]] std::string to_bytes() const;
  /// Reads a file written by `save`.
  /// @throws NotFoundError if the file does not exist; IntegrityError if it is truncated, corrupted or not
  ///         an mlops adapter
  [[nodiscard]] static Adapter load(const std::filesystem::path& path);
  /// Parses safetensors bytes (as `load`); `what` names the source in messages.
  [[nodiscard]] static Adapter from_bytes(std::string_view bytes, const std::string& what = "adapter bytes");

 private:
  std::size_t features_ = 0;
  std::size_t hidden_ = 0;
  std::vector<std::string> classes_;
  std::vector<float> weights_;
  nlohmann::json featurizer_ = nlohmann::json::object();
  nlohmann::json spec_ = nlohmann::json::object();
  nlohmann::json lineage_ = nlohmann::json::object();
};

}  // namespace mlops
