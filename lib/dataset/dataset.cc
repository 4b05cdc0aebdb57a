#include "mlops/dataset.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <optional>
#include <string>

#include "core/hash.hpp"
#include "core/uri.hpp"
#include "mlops/error.hpp"

namespace mlops {

nlohmann::json DatasetLineage::to_json() const {
  nlohmann::json j = {{"commit", commit},   {"ref", ref},       {"uri", uri},
          {"table", table},     {"query", query},   {"params", params},
          {"label", label},     {"features", features}, {"text", text},
          {"featurizer", featurizer}, {"rows", rows}, {"dropped_rows", dropped_rows},
          {"digest", digest}};
  if (!holdout.empty()) j["holdout"] = holdout;
  return j;
}

DatasetLineage DatasetLineage::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw DataError("dataset lineage must be a JSON object, got " + std::string(j.type_name()));
  DatasetLineage l;
  try {
    l.commit = j.value("commit", "");
    l.ref = j.value("ref", "");
    l.uri = detail::redact_uri(j.value("uri", ""));
    l.table = j.value("table", "");
    l.query = j.value("query", "");
    l.params = j.value("params", nlohmann::json::array());
    l.label = j.value("label", "");
    l.features = j.value("features", std::vector<std::string>{});
    l.text = j.value("text", "");
    l.featurizer = j.value("featurizer", nlohmann::json::object());
    l.rows = j.value("rows", std::int64_t{0});
    l.dropped_rows = j.value("dropped_rows", std::int64_t{0});
    l.digest = j.value("digest", "");
    l.holdout = j.value("holdout", nlohmann::json::object());
  } catch (const nlohmann::json::exception& e) {
    throw DataError(std::string("dataset lineage has a field of the wrong type: ") + e.what());
  }
  return l;
}

namespace {
void put_u64(detail::Digest& d, std::uint64_t v) {
  unsigned char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
  d.update(b, 8);
}
}  // namespace

std::string dataset_digest(std::span<const float> X, std::size_t rows, std::size_t cols,
                           std::span<const std::int32_t> y, const std::vector<std::string>& classes) {
  // Little-endian, length-prefixed: a stable definition, independent of where the rows came from.
  detail::Digest d("SHA256");
  d.update(std::string_view("mlops.dataset.v1", 17));
  put_u64(d, rows);
  put_u64(d, cols);
  static_assert(sizeof(float) == 4 && std::endian::native == std::endian::little,
                "the digest is defined over little-endian IEEE-754 float32");
  d.update(X.data(), X.size_bytes());
  d.update(y.data(), y.size_bytes());
  put_u64(d, classes.size());
  for (const auto& c : classes) {
    put_u64(d, c.size());
    d.update(c);
  }
  return d.hex();
}

namespace {

// The first non-finite feature or out-of-range label, described for a message; nothing when all are fine.
// A whole block of values is tested with integer operations that vectorise before any is looked at one by one.
std::optional<std::string> first_bad_value(const float* x, std::size_t rows, std::size_t cols, const std::int32_t* y,
                                           std::int64_t n_classes) {
  for (std::size_t i = 0; i < rows; ++i)
    if (y[i] < 0 || y[i] >= n_classes)
      return "field y, row " + std::to_string(i) + ": label index " + std::to_string(y[i]) + " is out of range [0, " +
             std::to_string(n_classes) + ")";
  const std::size_t n = rows * cols;
  constexpr std::size_t kBlock = 4096;
  for (std::size_t begin = 0; begin < n; begin += kBlock) {
    const std::size_t end = std::min(n, begin + kBlock);
    std::uint32_t non_finite = 0;
    for (std::size_t i = begin; i < end; ++i) {
      const auto bits = std::bit_cast<std::uint32_t>(x[i]);
      non_finite |= static_cast<std::uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
    }
    if (!non_finite) continue;
    for (std::size_t i = begin; i < end; ++i)
      if (!std::isfinite(x[i]))
        return "field X, row " + std::to_string(i / cols) + ", column " + std::to_string(i % cols) +
               ": value is not finite (NaN or Inf)";
  }
  return std::nullopt;
}

}  // namespace

Dataset::Dataset() : Dataset({}, 0, 0, {}, {}, {}) {}

Dataset::Dataset(std::vector<float> X, std::size_t rows, std::size_t cols, std::vector<std::int32_t> y,
                 std::vector<std::string> classes, DatasetLineage lineage)
    : rows_(rows), cols_(cols) {
  if (cols != 0 && rows > X.max_size() / cols)
    throw DataError("dataset shape " + std::to_string(rows) + "x" + std::to_string(cols) + " overflows");
  if (X.size() != rows * cols)
    throw DataError("dataset X has " + std::to_string(X.size()) + " values, expected rows*cols = " +
                    std::to_string(rows) + "*" + std::to_string(cols));
  if (y.size() != rows)
    throw DataError("dataset y has " + std::to_string(y.size()) + " labels, expected " + std::to_string(rows));
  lineage.rows = static_cast<std::int64_t>(rows);
  lineage.uri = detail::redact_uri(lineage.uri);  // a source URI never carries its secrets onward
  lineage.digest = dataset_digest(X, rows, cols, y, classes);
  x_ = std::make_shared<const std::vector<float>>(std::move(X));
  y_ = std::make_shared<const std::vector<std::int32_t>>(std::move(y));
  classes_ = std::make_shared<const std::vector<std::string>>(std::move(classes));
  lineage_ = std::make_shared<const DatasetLineage>(std::move(lineage));
  if (auto bad = first_bad_value(x_->data(), rows_, cols_, y_->data(), static_cast<std::int64_t>(classes_->size())))
    value_problem_ = std::make_shared<const std::string>(std::move(*bad));
}

void Dataset::validate(const std::string& what) const {
  if (rows_ == 0) throw DataError(what + ": dataset is empty (0 rows)");
  if (cols_ == 0) throw DataError(what + ": dataset has no feature columns");
  if (classes_->empty()) throw DataError(what + ": dataset has no classes");
  if (value_problem_) throw DataError(what + ": " + *value_problem_);
}

Dataset Dataset::take(std::span<const std::size_t> indices) const {
  std::vector<float> X;
  std::vector<std::int32_t> y;
  X.reserve(indices.size() * cols_);
  y.reserve(indices.size());
  for (std::size_t idx : indices) {
    if (idx >= rows_)
      throw DataError("row index " + std::to_string(idx) + " is out of range for a dataset of " +
                      std::to_string(rows_) + " rows");
    const float* row = x_->data() + idx * cols_;
    X.insert(X.end(), row, row + cols_);
    y.push_back((*y_)[idx]);
  }
  return Dataset(std::move(X), indices.size(), cols_, std::move(y), *classes_, *lineage_);
}

}  // namespace mlops
