#include "serve/model_dir.hpp"

#include <fstream>

#include "core/text.hpp"
#include "mlops/error.hpp"

namespace mlops::detail {

namespace fs = std::filesystem;

namespace {

// The folder holding MLmodel: `dir` itself or the one folder below it that has one.
fs::path model_root(const fs::path& dir, const std::string& name) {
  std::error_code ec;
  if (fs::is_regular_file(dir / "MLmodel", ec)) return dir;
  if (fs::is_directory(dir, ec))
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.is_directory() && fs::is_regular_file(e.path() / "MLmodel", ec)) return e.path();
  throw NotFoundError("model " + quote_for_message(name) + ": no MLflow model directory (MLmodel) in " +
                      quote_for_message(dir.string(), 200));
}

// The python_function flavor's `data` entry: the weights file, relative to the model directory.
std::string weights_entry(const fs::path& mlmodel, const std::string& name) {
  std::ifstream in(mlmodel);
  bool in_pyfunc = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("  python_function:", 0) == 0) {
      in_pyfunc = true;
      continue;
    }
    if (in_pyfunc && line.rfind("    ", 0) != 0) in_pyfunc = false;
    const std::string key = "    data: ";
    if (in_pyfunc && line.rfind(key, 0) == 0) {
      std::string v = line.substr(key.size());
      if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front()) v = v.substr(1, v.size() - 2);
      return v;
    }
  }
  throw IntegrityError("model " + quote_for_message(name) + ": " + quote_for_message(mlmodel.string(), 200) +
                       " names no python_function data file");
}

}  // namespace

Adapter load_model_dir(const fs::path& dir, const std::string& name) {
  const auto root = model_root(dir, name);
  const auto weights = weights_entry(root / "MLmodel", name);
  if (weights.empty() || weights.find("..") != std::string::npos || weights.front() == '/')
    throw IntegrityError("model " + quote_for_message(name) + ": weights path " + quote_for_message(weights) +
                         " leaves the model directory");
  return Adapter::load(root / weights);
}

}  // namespace mlops::detail
