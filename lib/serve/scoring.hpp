// MLflow's scoring protocol for one adapter, without HTTP: request bodies in, typed labels out (internal).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlops/adapter.hpp"
#include "mlops/error.hpp"

namespace mlops::detail {

/// A request the server refuses: the HTTP status, the mlops error id, a stable reason and the message.
class RequestError : public Error {
 public:
  RequestError(int status, const std::string& id, std::string reason, const std::string& message)
      : Error(id, message), status_(status), reason_(std::move(reason)) {}
  [[nodiscard]] int status() const noexcept { return status_; }
  [[nodiscard]] const std::string& reason() const noexcept { return reason_; }
  /// {"error_code": id, "reason": reason, "message": what()}
  [[nodiscard]] std::string to_json() const;

 private:
  int status_;
  std::string reason_;
};

/// 400 with id mlops.data.
RequestError bad_request(std::string reason, const std::string& message);

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

/// The labels of `rows`, typed like the training labels (a JSON list).
nlohmann::json predict_labels(const Adapter& adapter, const ScoringRows& rows);

}  // namespace mlops::detail
