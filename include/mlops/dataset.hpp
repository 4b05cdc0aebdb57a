/// @file dataset.hpp
/// A training dataset: features X, class indices y, the class labels, and where the rows came from.
///
/// Data layout, for the whole API: X is row-major n×d float32 (row i is X[i*d .. i*d+d)), y is n int32
/// class indices into `classes()`. Storage is immutable and shared: copying a Dataset copies two
/// pointers, and Python's `Dataset.X` / `Dataset.y` are read-only NumPy views of the same memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mlops {

/// Where a dataset's rows came from. Never holds a password or token.
struct DatasetLineage {
  std::string commit;              ///< resolved data commit (opaque: 40 hex for DoltLite, 32 base32 for Dolt)
  std::string ref;                 ///< the ref the caller asked for ("HEAD", "main", a hash), before resolving
  std::string uri;                 ///< source URI with credentials removed
  std::string table;               ///< table the rows were read from
  std::string query;               ///< the exact SQL text that read them (values bound, not inlined)
  nlohmann::json params = nlohmann::json::array();  ///< the bound values of `query`
  std::string label;               ///< label column
  std::vector<std::string> features;  ///< feature columns (empty when a text column was featurized)
  std::string text;                ///< featurized text column (empty when none)
  nlohmann::json featurizer = nlohmann::json::object();  ///< featurizer settings (kind, dimension, seed)
  std::int64_t rows = 0;           ///< number of rows in the dataset
  std::int64_t dropped_rows = 0;   ///< rows skipped because the caller asked to drop invalid rows
  std::string digest;              ///< Dataset::content_digest() of the rows
  /// The evaluation split the read kept one side of ({side: "train"|"evaluation", salt, fraction});
  /// empty when every row of the query was read
  nlohmann::json holdout = nlohmann::json::object();

  [[nodiscard]] nlohmann::json to_json() const;
  static DatasetLineage from_json(const nlohmann::json& j);
  bool operator==(const DatasetLineage&) const = default;
};

/// Features, labels and lineage of one training set. Immutable after construction.
class Dataset {
 public:
  /// An empty dataset (0×0, no classes).
  Dataset();

  /// Takes ownership of the arrays.
  /// @param X row-major rows×cols float32 values; X.size() must equal rows*cols
  /// @param y rows class indices; each should lie in [0, classes.size()) (checked by `validate()`)
  /// @param classes the label of each class index, as text ("0", "spam", ...)
  /// @param lineage provenance; `lineage.rows` and `lineage.digest` are filled in here
  /// @throws DataError if the sizes disagree
  Dataset(std::vector<float> X, std::size_t rows, std::size_t cols, std::vector<std::int32_t> y,
          std::vector<std::string> classes, DatasetLineage lineage = {});

  [[nodiscard]] std::size_t rows() const noexcept { return rows_; }
  [[nodiscard]] std::size_t cols() const noexcept { return cols_; }
  /// rows×cols row-major features (borrowed; valid while any copy of this Dataset lives).
  [[nodiscard]] std::span<const float> X() const noexcept { return {x_->data(), x_->size()}; }
  /// rows class indices (borrowed, as X).
  [[nodiscard]] std::span<const std::int32_t> y() const noexcept { return {y_->data(), y_->size()}; }
  [[nodiscard]] const std::vector<std::string>& classes() const noexcept { return *classes_; }
  [[nodiscard]] const DatasetLineage& lineage() const noexcept { return *lineage_; }

  /// Shared owners of the storage, for zero-copy views (the Python bindings keep these alive).
  [[nodiscard]] std::shared_ptr<const std::vector<float>> x_storage() const noexcept { return x_; }
  [[nodiscard]] std::shared_ptr<const std::vector<std::int32_t>> y_storage() const noexcept { return y_; }

  /// SHA-256 (hex) over the shape, X, y and the class labels: equal for equal contents, whatever the
  /// source. Computed once at construction.
  [[nodiscard]] const std::string& content_digest() const noexcept { return lineage_->digest; }

  /// Checks the dataset: at least one row, one column and one class, every feature finite, every label in
  /// range. The values are scanned once, when the dataset is made, and the first bad one remembered, so
  /// this call costs no pass over the data however often it is made.
  /// @param what names the dataset in the message (e.g. "adapter 'customer-7'")
  /// @throws DataError naming `what`, the field, and the first bad row
  void validate(const std::string& what) const;
  /// Whether every feature is finite and every label in range (known since construction).
  [[nodiscard]] bool values_valid() const noexcept { return !value_problem_; }

  /// A new dataset with the same lineage and the rows at `indices` (in that order).
  [[nodiscard]] Dataset take(std::span<const std::size_t> indices) const;

 private:
  std::size_t rows_ = 0;
  std::size_t cols_ = 0;
  std::shared_ptr<const std::vector<float>> x_;
  std::shared_ptr<const std::vector<std::int32_t>> y_;
  std::shared_ptr<const std::vector<std::string>> classes_;
  std::shared_ptr<const DatasetLineage> lineage_;
  std::shared_ptr<const std::string> value_problem_;  ///< the first bad value found at construction; null if none
};

/// SHA-256 hex digest of a dataset's contents (see Dataset::content_digest).
[[nodiscard]] std::string dataset_digest(std::span<const float> X, std::size_t rows, std::size_t cols,
                                         std::span<const std::int32_t> y,
                                         const std::vector<std::string>& classes);

}  // namespace mlops
