#include "serve/model_dir.hpp"

#include "core/text.hpp"
#include "mlflow/model_dir.hpp"
#include "mlops/error.hpp"

namespace mlops::detail {

namespace fs = std::filesystem;

namespace {

// The model directory of a release entry: `dir` itself, or the one folder below it holding an MLmodel
// (a build context keeps each model's artifacts as downloaded, e.g. models/<name>/model/).
fs::path model_root(const fs::path& dir, const std::string& name) {
  std::error_code ec;
  if (fs::is_regular_file(dir / model_dir::kMlmodel, ec)) return dir;
  if (fs::is_directory(dir, ec))
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.is_directory() && fs::is_regular_file(e.path() / model_dir::kMlmodel, ec)) return e.path();
  throw NotFoundError("model " + quote_for_message(name) + ": no MLflow model directory (MLmodel) in " +
                      quote_for_message(dir.string(), 200));
}

}  // namespace

Adapter load_model_dir(const fs::path& dir, const std::string& name) {
  const auto root = model_root(dir, name);
  const auto weights = model_dir::read(root).weights;
  if (weights.find("..") != std::string::npos || weights.front() == '/')
    throw IntegrityError("model " + quote_for_message(name) + ": weights path " + quote_for_message(weights) +
                         " leaves the model directory");
  return Adapter::load(root / weights);
}

}  // namespace mlops::detail
