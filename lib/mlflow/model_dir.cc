// The adapter model directory: see model_dir.hpp for its layout.
#include "mlflow/model_dir.hpp"

#include <cctype>
#include <ctime>
#include <fstream>
#include <mutex>

#include "mlflow/internal.hpp"
#include "mlops/config.hpp"
#include "mlops/error.hpp"

namespace mlops::model_dir {

namespace {

// A JSON string is a valid YAML scalar, whatever it holds.
std::string yaml_str(const std::string& s) { return nlohmann::json(s).dump(); }

std::mutex python_version_mutex;
std::string python_version_value;

}  // namespace

void set_python_version(std::string version) {
  std::lock_guard lock(python_version_mutex);
  python_version_value = std::move(version);
}

// This project by its distribution name and version (the bare name `mlops` on the public index is another
// package), and what mlops.pyfunc imports besides it: numpy, and pandas for DataFrame input.
std::string requirements_text() { return "mlops-dolt==" MLOPS_VERSION_STRING "\nnumpy\npandas\n"; }

nlohmann::json signature(bool takes_text, std::size_t features, bool integer_labels) {
  // Columns by position, without names: MLflow then still hands the loader a list or Series of texts and
  // a bare array of features (a named schema refuses them), and a DataFrame with the training column.
  nlohmann::json inputs = nlohmann::json::array();
  const nlohmann::json column = {{"type", takes_text ? "string" : "double"}, {"required", true}};
  for (std::size_t i = 0; i < (takes_text ? 1 : features); ++i) inputs.push_back(column);
  const nlohmann::json outputs = nlohmann::json::array({{{"type", integer_labels ? "long" : "string"}, {"required", true}}});
  return {{"inputs", inputs.dump()}, {"outputs", outputs.dump()}};
}

TextFiles text_files(const std::string& dir_name, const std::string& weights_name, const std::string& weights_sha256,
                     const std::string& run_id, const nlohmann::json& lineage, const nlohmann::json& signature) {
  if (!lineage.is_object() && !lineage.is_null())
    throw DataError("model lineage must be a JSON object, got " + std::string(lineage.type_name()));
  std::time_t now = std::time(nullptr);
  char when[64];
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S.000000", std::gmtime(&now));
  TextFiles f;
  f.mlmodel += "artifact_path: " + yaml_str(dir_name) + "\n";
  f.mlmodel += "flavors:\n";
  f.mlmodel += "  python_function:\n";
  f.mlmodel += "    data: " + yaml_str(weights_name) + "\n";
  f.mlmodel += std::string("    loader_module: ") + kLoaderModule + "\n";
  {
    std::lock_guard lock(python_version_mutex);
    if (!python_version_value.empty()) f.mlmodel += "    python_version: " + yaml_str(python_version_value) + "\n";
  }
  f.mlmodel += "  mlops:\n";
  f.mlmodel += "    format: mlops.adapter.v1\n";
  f.mlmodel += "    mlops_version: " + yaml_str(MLOPS_VERSION_STRING) + "\n";
  f.mlmodel += "    weights_sha256: " + yaml_str(weights_sha256) + "\n";
  f.mlmodel += "model_uuid: " + yaml_str(detail::random_hex_id()) + "\n";
  f.mlmodel += "run_id: " + yaml_str(run_id) + "\n";
  if (signature.is_object()) {
    f.mlmodel += "signature:\n";
    f.mlmodel += "  inputs: " + yaml_str(signature.value("inputs", std::string("[]"))) + "\n";
    f.mlmodel += "  outputs: " + yaml_str(signature.value("outputs", std::string("[]"))) + "\n";
    f.mlmodel += "  params: null\n";
  }
  f.mlmodel += "utc_time_created: " + yaml_str(when) + "\n";
  nlohmann::json doc = lineage.is_null() ? nlohmann::json::object() : lineage;
  doc["weights_sha256"] = weights_sha256;
  doc["run_id"] = run_id;
  // JSON on one line is a YAML flow mapping; invalid UTF-8 is replaced rather than refused.
  const nlohmann::json metadata = {{"lineage", std::move(doc)}};
  f.mlmodel += "metadata: " + metadata.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  f.requirements = requirements_text();
  return f;
}

Contents read(const std::filesystem::path& dir) {
  Contents c;
  std::ifstream mlmodel(dir / kMlmodel);
  // A scalar written by text_files: `key: "json string"` (a bare YAML scalar is taken as it is).
  auto scalar = [](const std::string& line, std::size_t start, std::size_t key_size) {
    std::string value = line.substr(start + key_size);
    value.erase(0, value.find_first_not_of(" \t"));
    while (!value.empty() && (value.back() == '\r' || value.back() == ' ')) value.pop_back();
    const auto parsed = nlohmann::json::parse(value, nullptr, false);
    return parsed.is_string() ? parsed.get<std::string>() : value;
  };
  for (std::string line; mlmodel && std::getline(mlmodel, line);) {
    const auto start = line.find_first_not_of(" \t");
    if (start == std::string::npos) continue;
    if (c.weights.empty() && line.compare(start, 5, "data:") == 0) c.weights = scalar(line, start, 5);
    else if (line.compare(start, 15, "weights_sha256:") == 0) c.weights_sha256 = scalar(line, start, 15);
    else if (start == 0 && line.compare(0, 9, "metadata:") == 0) {
      const auto metadata = nlohmann::json::parse(line.substr(9), nullptr, false);
      if (metadata.is_object() && metadata.contains("lineage")) c.lineage = metadata["lineage"];
    }
  }
  for (auto& ch : c.weights_sha256) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (c.weights.empty())
    throw IntegrityError(dir.string() + " is not an mlops model directory (no MLmodel with a data entry)");
  std::ifstream reqs(dir / kRequirements);
  for (std::string line; reqs && std::getline(reqs, line);)
    if (!line.empty() && line[0] != '#') c.requirements.push_back(line);
  return c;
}

}  // namespace mlops::model_dir
