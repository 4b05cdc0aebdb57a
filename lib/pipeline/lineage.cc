// Pipeline::lineage: where a model version came from, by number or alias.
#include <algorithm>
#include <charconv>

#include "mlops/error.hpp"

#include "mlops/mlflow.hpp"
#include "mlops/pipeline.hpp"

namespace mlops {

nlohmann::json Pipeline::lineage(const std::string& name, const std::string& version_or_alias) {
  std::int64_t version = 0;
  const bool numeric = !version_or_alias.empty() &&
                       std::all_of(version_or_alias.begin(), version_or_alias.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (numeric) {
    const char* end = version_or_alias.data() + version_or_alias.size();
    if (std::from_chars(version_or_alias.data(), end, version).ec != std::errc() || version < 1)
      throw ConfigError("model version " + version_or_alias + " of " + name + " is not a version number (1 to 2^63-1)");
  } else version = tracker_.get_by_alias(name, version_or_alias).version;
  nlohmann::json j = tracker_.lineage(name, version);
  j["name"] = name;
  j["version"] = version;
  return j;
}

}  // namespace mlops
