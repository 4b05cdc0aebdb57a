#include "serve/model_dir.hpp"

#include <fstream>
#include <iterator>

#include "core/hash.hpp"
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
  const auto contents = model_dir::read(root);
  const auto& weights = contents.weights;
  if (weights.find("..") != std::string::npos || weights.front() == '/')
    throw IntegrityError("model " + quote_for_message(name) + ": weights path " + quote_for_message(weights) +
                         " leaves the model directory");
  std::ifstream in(root / weights, std::ios::binary);
  if (!in) throw NotFoundError("model " + quote_for_message(name) + ": weights file " + quote_for_message(weights) + " is missing");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The weights MLmodel names by hash (every directory log_adapter writes does): a file swapped in under the
  // same release is refused. Hand-made directories without the hash load unverified.
  const auto actual = contents.weights_sha256.empty() ? std::string() : sha256_hex(bytes);
  if (actual != contents.weights_sha256)
    throw IntegrityError("model " + quote_for_message(name) + ": weights file " + quote_for_message(weights) +
                         " has SHA-256 " + actual + ", MLmodel records " + quote_for_message(contents.weights_sha256));
  return Adapter::from_bytes(bytes, "model " + name + " weights");
}

}  // namespace mlops::detail
