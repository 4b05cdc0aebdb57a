// The MLflow model directory of an adapter: the one place that writes and reads its format.
//
// Layout (every file at the top level of the directory, `model/` in a run's artifacts by default):
//
//   MLmodel            YAML that MLflow reads; every scalar is written as a JSON string (valid YAML):
//                        artifact_path: "<directory name>"
//                        flavors:
//                          python_function:
//                            data: "<weights file>"
//                            loader_module: mlops.pyfunc
//                          mlops:
//                            format: mlops.adapter.v1
//                            mlops_version: "<library version>"
//                            weights_sha256: "<hex SHA-256 of the weights file>"
//                        model_uuid: "<32 hex digits>"
//                        run_id: "<run id>"
//                        utc_time_created: "<YYYY-MM-DD HH:MM:SS.ffffff>"
//                        metadata: {"lineage": <the adapter's lineage, with weights_sha256 and run_id added>}
//                      `metadata` is MLflow's own field for a model's free-form description (one line of
//                      JSON, valid YAML). It is uploaded last: a directory with an MLmodel is complete.
//   <weights file>     the adapter, safetensors in the layout `mlops.adapter.v1` (include/mlops/adapter.hpp);
//                      `adapter.safetensors` for a trained adapter, the file's own name for log_model_file
//   requirements.txt   the pip requirements of serving it, one a line (requirements_text())
//
// Three files, three uploads: the lineage rides in MLmodel rather than in a file of its own.
//
// `mlflow.pyfunc.load_model` imports the loader module `mlops.pyfunc` (bindings/python/mlops/pyfunc.py)
// and calls its `_load_pyfunc` with the path of `data`; `mlops.pyfunc.load(directory)` reads `data` from
// MLmodel the same way as read() here. A release's build context copies the directories as they are.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mlops::model_dir {

inline constexpr const char* kMlmodel = "MLmodel";
inline constexpr const char* kRequirements = "requirements.txt";
inline constexpr const char* kAdapterWeights = "adapter.safetensors";
inline constexpr const char* kLoaderModule = "mlops.pyfunc";

/// The pip requirements of serving an adapter model, one a line: what mlops.pyfunc imports.
std::string requirements_text();

/// The text files of a model directory (everything but the weights).
struct TextFiles {
  std::string mlmodel;       ///< with the lineage in its metadata
  std::string requirements;
};

/// The text files of the directory `dir_name` for the weights file `weights_name` with SHA-256
/// `weights_sha256`, logged by run `run_id`. @throws DataError unless `lineage` is an object or null
/// `signature`, when an object, is MLmodel's `signature` ({"inputs": JSON text, "outputs": JSON text}).
TextFiles text_files(const std::string& dir_name, const std::string& weights_name,
                     const std::string& weights_sha256, const std::string& run_id, const nlohmann::json& lineage,
                     const nlohmann::json& signature = nullptr);

/// MLflow's model signature of an adapter: its input columns by position (one string column of text, or
/// `features` double columns) and its output (long for integer labels, else string).
nlohmann::json signature(bool takes_text, std::size_t features, bool integer_labels);

/// The Python version MLmodel names as the loader's (python_function's python_version), e.g. "3.11.2";
/// set by the Python module when it loads, empty (left out) otherwise.
void set_python_version(std::string version);

/// What read() finds in a model directory on disk.
struct Contents {
  std::string weights;                    ///< the weights file's name (MLmodel's python_function data)
  std::string weights_sha256;             ///< MLmodel's mlops.weights_sha256 (lowercase hex), "" when absent
  std::vector<std::string> requirements;  ///< requirements.txt's requirements (comments and blanks left out)
  nlohmann::json lineage;                 ///< MLmodel's metadata.lineage; null when absent
};

/// Reads a model directory on disk. @throws IntegrityError when it has no MLmodel naming its weights
Contents read(const std::filesystem::path& dir);

}  // namespace mlops::model_dir
