// MLflow's scoring protocol for one adapter, without HTTP: request bodies in, typed labels out (internal).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlops/adapter.hpp"
#include "mlops/error.hpp"

namespace mlops::detail {

/// A request the server refuses: the HTTP status, the mlops error id, a stable reason and the message
/// (without the "[id] " prefix, which what() adds once).
class RequestError : public Error {
 public:
  RequestError(int status, const std::string& id, std::string reason, const std::string& message)
      : Error(id, message), status_(status), reason_(std::move(reason)) {}
  [[nodiscard]] int status() const noexcept { return status_; }
  [[nodiscard]] const std::string& reason() const noexcept { return reason_; }
  /// The body MLflow's clients read, with the mlops details beside it:
  /// {"error_code": mlflow_error_code(status), "message": what(), "reason": reason, "error_id": id}
  [[nodiscard]] nlohmann::json to_json() const;

 private:
  int status_;
  std::string reason_;
};

/// 400 with id mlops.data.
RequestError bad_request(std::string reason, const std::string& message);

/// MLflow's error code for an HTTP status: RESOURCE_DOES_NOT_EXIST (404), INTERNAL_ERROR (5xx),
/// TEMPORARILY_UNAVAILABLE (503), BAD_REQUEST (any other).
const char* mlflow_error_code(int status) noexcept;

/// The rows of one scoring body for one adapter: raw texts (text adapter) or rows×features numbers.
struct ScoringRows {
  std::vector<std::string> texts;
  std::vector<float> X;
  std::size_t rows = 0;
};

/// Reads the rows of a scoring body: a JSON object with exactly one of `dataframe_split`,
/// `dataframe_records`, `instances`, `inputs` (other keys, such as `params` or `model`, are ignored).
/// @throws RequestError: no_input_format, not_text, not_numeric, wrong_feature_count, missing_column,
///         too_many_rows (more than `max_rows`, counted together with `rows_before`)
ScoringRows scoring_rows(const nlohmann::json& body, const Adapter& adapter, std::size_t max_rows,
                         std::size_t rows_before = 0);

/// The rows of a text/csv scoring body (RFC 4180: a header row naming the columns, then one row per
/// line), read as dataframe_split is: the text column for a text adapter, the feature columns (numbers)
/// for a numeric one. @throws RequestError: malformed_csv, and the errors of scoring_rows
ScoringRows scoring_rows_csv(std::string_view csv, const Adapter& adapter, std::size_t max_rows,
                             std::size_t rows_before = 0);

/// The labels of `rows`, typed like the training labels (a JSON list).
nlohmann::json predict_labels(const Adapter& adapter, const ScoringRows& rows);

}  // namespace mlops::detail
