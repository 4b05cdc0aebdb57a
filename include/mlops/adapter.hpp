/// @file adapter.hpp
/// A trained adapter: a softmax classifier (`hidden == 0`) or a one-hidden-layer ReLU MLP (`hidden > 0`)
/// over a dataset's features, with its class labels, featurizer settings, hyperparameters and lineage.
///
/// Shapes (row-major float32, as everywhere in mlops): d = features, h = hidden units, k = classes.
///   hidden == 0: W [d, k], b [k];                    p = softmax(X @ W + b)
///   hidden  > 0: W1 [d, h], b1 [h], W2 [h, k], b2 [k]; p = softmax(relu(X @ W1 + b1) @ W2 + b2)
/// The predicted class of a row is classes[argmax p] (the first index on ties).
///
/// Prediction follows scikit-learn: predict() returns labels only, predict_proba() the probabilities in
/// the order of classes(). Labels keep the training labels' type: when every class label is an integer
/// (decimal, fits int64) the labels are integers (integer_labels(), classes_json() holds numbers);
/// otherwise text. An adapter trained on a text column (its featurizer settings are a text featurizer)
/// takes raw text and featurizes it with the same Featurizer as training did.
///
/// File format (safetensors, "mlops.adapter.v1"): the tensors above, float32 little-endian, and string
/// metadata `format`, `classes` (JSON list: numbers for integer labels, else strings), `hidden` (decimal), `featurizer` (JSON object), `spec`
/// (JSON of hyperparameters), `lineage` (JSON object), and `checksum` ("sha256:" + hex SHA-256 of the
/// tensor bytes followed by every other metadata entry in key order, each as key NUL value NUL), which
/// load() verifies. Readable by the `safetensors` Python package.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlops/featurizer.hpp"

namespace mlops {

/// The weights and metadata of one trained classifier. A value type: copying copies the weights.
class Adapter {
 public:
  Adapter() = default;

  /// Builds an adapter from weights; checks every shape.
  /// @param features d; @param hidden h (0 = softmax classifier); @param classes k labels (k >= 2)
  /// @param weights W,b (hidden == 0) or W1,b1,W2,b2 concatenated in that order, row-major
  /// @param featurizer the settings of the featurizer that made its features (Featurizer::settings() for
  ///        text; then its dimension must equal `features`)
  /// @throws DataError if a size does not match the shapes, a value is not finite or the featurizer
  ///         settings are invalid
  Adapter(std::size_t features, std::size_t hidden, std::vector<std::string> classes, std::vector<float> weights,
          nlohmann::json featurizer = nlohmann::json::object(), nlohmann::json spec = nlohmann::json::object(),
          nlohmann::json lineage = nlohmann::json::object());

  [[nodiscard]] std::size_t features() const noexcept { return features_; }
  [[nodiscard]] std::size_t hidden() const noexcept { return hidden_; }
  [[nodiscard]] std::size_t num_classes() const noexcept { return classes_.size(); }
  /// The class labels as text (integer labels in decimal), in probability-column order.
  [[nodiscard]] const std::vector<std::string>& classes() const noexcept { return classes_; }
  /// True when every class label is an integer: predictions are then integers.
  [[nodiscard]] bool integer_labels() const noexcept { return integer_labels_; }
  /// The class labels typed like the training labels: a JSON list of integers or of strings.
  [[nodiscard]] const nlohmann::json& classes_json() const noexcept { return classes_json_; }
  /// True when the adapter was trained on a text column and predicts from raw text.
  [[nodiscard]] bool takes_text() const noexcept { return text_featurizer_.has_value(); }
  /// The text featurizer (rebuilt from featurizer()).
  /// @throws DataError if the adapter was trained on numeric feature columns
  [[nodiscard]] const Featurizer& text_featurizer() const;
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
  /// @returns rows×k row-major probabilities, each row sums to 1
  /// @throws DataError if X.size() != rows*features()
  [[nodiscard]] std::vector<float> predict_proba(std::span<const float> X, std::size_t rows) const;
  /// Class probabilities of raw texts (one row per text) for an adapter that takes_text().
  /// @throws DataError if the adapter was trained on numeric feature columns
  [[nodiscard]] std::vector<float> predict_proba(std::span<const std::string> texts) const;
  /// Predicted class indices (into classes()) of `rows` rows of X.
  [[nodiscard]] std::vector<std::int32_t> predict_indices(std::span<const float> X, std::size_t rows) const;
  /// Predicted class indices of raw texts.
  [[nodiscard]] std::vector<std::int32_t> predict_indices(std::span<const std::string> texts) const;
  /// Predicted labels of `rows` rows of X: classes()[index] (integer labels in decimal; see labels_json).
  [[nodiscard]] std::vector<std::string> predict(std::span<const float> X, std::size_t rows) const;
  /// Predicted labels of raw texts.
  [[nodiscard]] std::vector<std::string> predict(std::span<const std::string> texts) const;
  /// The labels of class indices as a JSON list typed like the training labels.
  [[nodiscard]] nlohmann::json labels_json(std::span<const std::int32_t> indices) const;
  /// The features of raw texts: texts.size() × features() float32, as at training time.
  /// @throws DataError if the adapter was trained on numeric feature columns
  [[nodiscard]] std::vector<float> featurize(std::span<const std::string> texts) const;

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
  bool integer_labels_ = false;
  nlohmann::json classes_json_ = nlohmann::json::array();
  std::optional<Featurizer> text_featurizer_;
  std::vector<float> weights_;
  nlohmann::json featurizer_ = nlohmann::json::object();
  nlohmann::json spec_ = nlohmann::json::object();
  nlohmann::json lineage_ = nlohmann::json::object();
};

}  // namespace mlops
