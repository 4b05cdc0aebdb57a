/// @file error.hpp
/// The exception hierarchy of mlops. Every failure a user can cause is one of these types; each has a
/// stable id (e.g. `mlops.data`) and a message that starts with `[<id>] `. Python sees one exception
/// class per type, all under `mlops.MlopsError`, with the same hierarchy.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace mlops {

/// Base of every mlops exception.
class Error : public std::runtime_error {
 public:
  /// The stable id of this error type, e.g. "mlops.data". Never changes between releases.
  [[nodiscard]] const std::string& id() const noexcept { return id_; }
  /// The message without the leading "[id] ".
  [[nodiscard]] std::string_view detail() const noexcept;

 protected:
  Error(std::string id, const std::string& message);

 private:
  std::string id_;
};

/// A configuration value is missing or malformed: a URI, an environment variable, an option.
class ConfigError : public Error {
 public:
  explicit ConfigError(const std::string& message) : Error("mlops.config", message) {}
};

/// A data source (Dolt, DoltLite, MySQL) failed: connection, authentication, SQL error, lost connection.
class DataSourceError : public Error {
 public:
  explicit DataSourceError(const std::string& message) : Error("mlops.data_source", message) {}
};

/// Input data is invalid: a bad manifest entry, a NULL label, a NaN feature, a ragged CSV row.
class DataError : public Error {
 public:
  explicit DataError(const std::string& message) : Error("mlops.data", message) {}
};

/// The MLflow tracking server answered with an error, or could not be reached.
class TrackingError : public Error {
 public:
  /// @param http_status the HTTP status (0 when no answer came)
  /// @param error_code MLflow's `error_code` field (empty when none)
  TrackingError(const std::string& message, int http_status = 0, std::string error_code = {})
      : Error("mlops.tracking", message), http_status_(http_status), error_code_(std::move(error_code)) {}
  [[nodiscard]] int http_status() const noexcept { return http_status_; }
  [[nodiscard]] const std::string& error_code() const noexcept { return error_code_; }

 private:
  int http_status_;
  std::string error_code_;
};

/// Something named does not exist: a branch, a commit, a model, a version, an alias, a file.
class NotFoundError : public Error {
 public:
  explicit NotFoundError(const std::string& message) : Error("mlops.not_found", message) {}
};

/// Something already exists or changed under us: a branch, a registered model, a param with another value.
class ConflictError : public Error {
 public:
  explicit ConflictError(const std::string& message) : Error("mlops.conflict", message) {}
};

/// A compute device is unusable: no GPU for `device="cuda"`, out of device memory, a CUDA failure.
class DeviceError : public Error {
 public:
  explicit DeviceError(const std::string& message) : Error("mlops.device", message) {}
};

/// Stored bytes do not match what they claim: a hash mismatch, a truncated or corrupted file.
class IntegrityError : public Error {
 public:
  explicit IntegrityError(const std::string& message) : Error("mlops.integrity", message) {}
};

/// A broken internal invariant: a bug in mlops, never the user's fault. Thrown instead of aborting.
class InternalError : public Error {
 public:
  explicit InternalError(const std::string& message) : Error("mlops.internal", message) {}
};

}  // namespace mlops
