#include "mlops/version.hpp"

namespace mlops {

std::string version() { return MLOPS_VERSION_STRING; }

std::string components() {
  std::string out;
  auto add = [&](bool on, const char* name) {
    if (!on) return;
    if (!out.empty()) out += ",";
    out += name;
  };
  add(MLOPS_WITH_DOLT, "dolt");
  add(MLOPS_WITH_MLFLOW, "mlflow");
  add(MLOPS_WITH_CUDA, "cuda");
  return out;
}

}  // namespace mlops
