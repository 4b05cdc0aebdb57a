// Reading an adapter out of an MLflow model directory (internal).
#pragma once

#include <filesystem>
#include <string>

#include "mlops/adapter.hpp"

namespace mlops::detail {

/// The adapter of the MLflow model directory (read by lib/mlflow/model_dir) at or under `dir`.
/// @throws NotFoundError if there is none; IntegrityError if its weights are corrupted or are not the file
///         MLmodel's weights_sha256 names (when it names one)
Adapter load_model_dir(const std::filesystem::path& dir, const std::string& name);

}  // namespace mlops::detail
