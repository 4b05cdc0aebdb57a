// Value types of the MLflow client read from the server's JSON: ModelVersion, RunInfo, RegisteredModel.
#include <cmath>
#include <string>

#include "mlflow/internal.hpp"
#include "mlops/tags.hpp"

namespace mlops {

namespace detail {

std::map<std::string, std::string> tag_map(const nlohmann::json& tags) {
  std::map<std::string, std::string> out;
  if (tags.is_array()) {
    for (const auto& t : tags) out[t.value("key", "")] = t.value("value", "");
  } else if (tags.is_object()) {
    for (auto it = tags.begin(); it != tags.end(); ++it)
      out[it.key()] = it.value().is_string() ? it.value().get<std::string>() : it.value().dump();
  }
  return out;
}

nlohmann::json tag_list(const std::map<std::string, std::string>& tags) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [k, v] : tags) out.push_back({{"key", k}, {"value", v}});
  return out;
}

std::string query_literal(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "\\'";
    else out += c;
  }
  return out + "'";
}

std::int64_t to_int64(const nlohmann::json& j) {
  if (j.is_number_integer()) return j.get<std::int64_t>();
  if (j.is_string()) {
    try {
      return std::stoll(j.get<std::string>());
    } catch (...) {
    }
  }
  return 0;
}

double to_double(const nlohmann::json& j) {
  if (j.is_number()) return j.get<double>();
  if (j.is_string()) {  // MLflow writes NaN and the infinities as strings
    const std::string s = j.get<std::string>();
    if (s == "NaN") return std::nan("");
    if (s == "Infinity") return HUGE_VAL;
    if (s == "-Infinity") return -HUGE_VAL;
    try {
      return std::stod(s);
    } catch (...) {
    }
  }
  return std::nan("");
}

}  // namespace detail

using detail::tag_map;
using detail::to_int64;

nlohmann::json ModelVersion::to_json() const {
  return {{"name", name},         {"version", version}, {"run_id", run_id},
          {"source", source},     {"status", status},   {"aliases", aliases},
          {"tags", tags},         {"creation_timestamp", creation_timestamp}};
}

ModelVersion ModelVersion::from_json(const nlohmann::json& j) {
  ModelVersion v;
  v.name = j.value("name", "");
  v.version = to_int64(j.value("version", nlohmann::json(0)));
  v.run_id = j.value("run_id", "");
  v.source = j.value("source", "");
  v.status = j.value("status", "");
  if (j.contains("aliases"))
    for (const auto& a : j["aliases"]) v.aliases.push_back(a.get<std::string>());
  v.tags = tag_map(j.value("tags", nlohmann::json::array()));
  v.creation_timestamp = to_int64(j.value("creation_timestamp", nlohmann::json(0)));
  return v;
}

std::string RunInfo::tag(const std::string& key) const {
  auto it = tags.find(key);
  return it == tags.end() ? std::string() : it->second;
}

nlohmann::json RunInfo::to_json() const {
  return {{"run_id", run_id},   {"experiment_id", experiment_id}, {"name", name},
          {"status", status},   {"artifact_uri", artifact_uri},   {"start_time", start_time},
          {"end_time", end_time}, {"tags", tags},                 {"params", params},
          {"metrics", metrics}};
}

RunInfo RunInfo::from_json(const nlohmann::json& run) {
  RunInfo r;
  const auto info = run.value("info", nlohmann::json::object());
  const auto data = run.value("data", nlohmann::json::object());
  r.run_id = info.value("run_id", "");
  r.experiment_id = info.value("experiment_id", "");
  r.status = info.value("status", "");
  r.artifact_uri = info.value("artifact_uri", "");
  r.start_time = to_int64(info.value("start_time", nlohmann::json(0)));
  r.end_time = to_int64(info.value("end_time", nlohmann::json(0)));
  r.tags = tag_map(data.value("tags", nlohmann::json::array()));
  r.params = tag_map(data.value("params", nlohmann::json::array()));
  for (const auto& m : data.value("metrics", nlohmann::json::array()))
    r.metrics[m.value("key", "")] = detail::to_double(m.value("value", nlohmann::json()));
  r.name = info.value("run_name", r.tag(tags::kRunName));
  return r;
}

nlohmann::json RegisteredModel::to_json() const {
  return {{"name", name},
          {"description", description},
          {"tags", tags},
          {"aliases", aliases},
          {"creation_timestamp", creation_timestamp},
          {"last_updated_timestamp", last_updated_timestamp}};
}

RegisteredModel RegisteredModel::from_json(const nlohmann::json& j) {
  RegisteredModel m;
  m.name = j.value("name", "");
  m.description = j.value("description", "");
  m.tags = tag_map(j.value("tags", nlohmann::json::array()));
  for (const auto& a : j.value("aliases", nlohmann::json::array()))
    m.aliases[a.value("alias", "")] = to_int64(a.value("version", nlohmann::json(0)));
  m.creation_timestamp = to_int64(j.value("creation_timestamp", nlohmann::json(0)));
  m.last_updated_timestamp = to_int64(j.value("last_updated_timestamp", nlohmann::json(0)));
  return m;
}

}  // namespace mlops
