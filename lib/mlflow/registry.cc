// MlflowTracker: the model registry (registered models, versions, aliases, tags).
#include <chrono>
#include <set>
#include <thread>

#include "core/text.hpp"
#include "mlflow/internal.hpp"
#include "mlops/error.hpp"
#include "mlops/tags.hpp"

namespace mlops {

using detail::query_literal;
using detail::tag_list;
using detail::tag_map;

bool MlflowTracker::create_registered_model(const std::string& name, const std::map<std::string, std::string>& tags,
                                            const std::string& description) {
  if (name.empty()) throw ConfigError("registered model name must not be empty");
  nlohmann::json body = {{"name", name}};
  if (!tags.empty()) body["tags"] = tag_list(tags);
  if (!description.empty()) body["description"] = description;
  bool created = true;
  try {
    impl_->call("POST", "mlflow/registered-models/create", body);
  } catch (const ConflictError&) {
    // Exists already (maybe created by a concurrent process): that is what was asked for.
    created = false;
  }
  std::lock_guard lock(impl_->models_mutex);
  impl_->known_models.insert(name);
  return created;
}

void MlflowTracker::delete_registered_model(const std::string& name) {
  impl_->call("DELETE", "mlflow/registered-models/delete", {{"name", name}});
  std::lock_guard lock(impl_->models_mutex);
  impl_->known_models.erase(name);
}

ModelVersion MlflowTracker::register_model(const std::string& name, const Run& run, const std::string& artifact_path,
                                           const std::map<std::string, std::string>& tags, double wait_seconds) {
  bool known = false;
  {
    std::lock_guard lock(impl_->models_mutex);
    known = impl_->known_models.count(name) > 0;
  }
  if (!known) create_registered_model(name);
  std::string source = run.artifact_uri();
  if (!artifact_path.empty()) source += "/" + artifact_path;
  auto all = tags;
  const std::string request_id = detail::random_hex_id();
  all[tags::kClientRequestId] = request_id;
  nlohmann::json body = {{"name", name}, {"source", source}, {"run_id", run.id()}, {"tags", tag_list(all)}};
  auto find_created = [&]() -> std::optional<nlohmann::json> {
    auto found = impl_->call("GET", "mlflow/model-versions/search",
                             {{"filter", "name = " + query_literal(name) + " and run_id = " + query_literal(run.id())},
                              {"max_results", 1000}},
                             0);
    for (const auto& mv : found.value("model_versions", nlohmann::json::array()))
      if (tag_map(mv.value("tags", nlohmann::json::array()))[tags::kClientRequestId] == request_id)
        return nlohmann::json{{"model_version", mv}};
    return std::nullopt;
  };
  const std::string what = "registering " + source + " as model " + detail::quote_for_message(name);
  nlohmann::json created;
  try {
    created = impl_->create_once("mlflow/model-versions/create", body, find_created, what);
  } catch (const NotFoundError&) {
    if (!known) throw;
    // Deleted since this tracker saw it: create it again.
    {
      std::lock_guard lock(impl_->models_mutex);
      impl_->known_models.erase(name);
    }
    create_registered_model(name);
    created = impl_->create_once("mlflow/model-versions/create", body, find_created, what);
  }
  ModelVersion v = ModelVersion::from_json(created.at("model_version"));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(wait_seconds);
  double pause = 0.02;
  while (v.status != "READY") {
    if (v.status == "FAILED_REGISTRATION")
      throw TrackingError("registration of " + name + " version " + std::to_string(v.version) + " failed");
    if (std::chrono::steady_clock::now() > deadline)
      throw TrackingError("model " + name + " version " + std::to_string(v.version) + " not READY after " +
                          std::to_string(wait_seconds) + " s (status " + v.status + ")");
    std::this_thread::sleep_for(std::chrono::duration<double>(pause));
    pause = std::min(pause * 2, 1.0);
    v = get_model_version(name, v.version);
  }
  return v;
}

ModelVersion MlflowTracker::get_model_version(const std::string& name, std::int64_t version) {
  auto j = impl_->call("GET", "mlflow/model-versions/get", {{"name", name}, {"version", std::to_string(version)}});
  return ModelVersion::from_json(j.at("model_version"));
}

void MlflowTracker::set_alias(const std::string& name, const std::string& alias, std::int64_t version) {
  impl_->call("POST", "mlflow/registered-models/alias",
              {{"name", name}, {"alias", alias}, {"version", std::to_string(version)}});
}

ModelVersion MlflowTracker::get_by_alias(const std::string& name, const std::string& alias) {
  try {
    auto j = impl_->call("GET", "mlflow/registered-models/alias", {{"name", name}, {"alias", alias}});
    return ModelVersion::from_json(j.at("model_version"));
  } catch (const TrackingError& e) {
    // The server answers a missing alias with INVALID_PARAMETER_VALUE ("... alias x not found.").
    if (e.http_status() == 400 && std::string(e.what()).find("not found") != std::string::npos)
      throw NotFoundError("alias " + detail::quote_for_message(alias) + " of model " + detail::quote_for_message(name) +
                          " does not exist");
    throw;
  }
}

void MlflowTracker::delete_alias(const std::string& name, const std::string& alias) {
  impl_->call("DELETE", "mlflow/registered-models/alias", {{"name", name}, {"alias", alias}});
}

void MlflowTracker::set_registered_model_tag(const std::string& name, const std::string& key,
                                             const std::string& value) {
  detail::validate_key(key, "registered model tag");
  impl_->call("POST", "mlflow/registered-models/set-tag", {{"name", name}, {"key", key}, {"value", value}});
}

void MlflowTracker::set_model_version_tag(const std::string& name, std::int64_t version, const std::string& key,
                                          const std::string& value) {
  detail::validate_key(key, "model version tag");
  impl_->call("POST", "mlflow/model-versions/set-tag",
              {{"name", name}, {"version", std::to_string(version)}, {"key", key}, {"value", value}});
}

RegisteredModel MlflowTracker::get_registered_model(const std::string& name) {
  return RegisteredModel::from_json(
      impl_->call("GET", "mlflow/registered-models/get", {{"name", name}}).at("registered_model"));
}

std::vector<ModelVersion> MlflowTracker::search_model_versions(const std::string& filter, int page_size) {
  if (page_size <= 0 || page_size > 10000) throw ConfigError("page_size must be in 1..10000");
  std::vector<ModelVersion> out;
  // The server pages by offset. Its default order puts the last updated first, so a version created
  // while the pages are read pushes the rest down (the next page repeats what was read) and an updated
  // one moves up (the next page skips a version). By name and version the order never changes, and a
  // version created meanwhile only repeats one that was read, which is dropped here.
  nlohmann::json q = {{"max_results", page_size}, {"order_by", {"name ASC", "version_number ASC"}}};
  if (!filter.empty()) q["filter"] = filter;
  std::set<std::pair<std::string, std::int64_t>> seen;
  impl_->each_page("GET", "mlflow/model-versions/search", q, "model_versions", [&](nlohmann::json& mv) {
    auto v = ModelVersion::from_json(mv);
    if (seen.emplace(v.name, v.version).second) out.push_back(std::move(v));
  });
  return out;
}

std::vector<RegisteredModel> MlflowTracker::search_registered_models(const std::string& filter, int page_size) {
  if (page_size <= 0 || page_size > 1000) throw ConfigError("page_size must be in 1..1000");
  std::vector<RegisteredModel> out;
  nlohmann::json q = {{"max_results", page_size}};
  if (!filter.empty()) q["filter"] = filter;
  // Ordered by name (the server's default); a model created while the pages are read repeats one.
  std::set<std::string> seen;
  impl_->each_page("GET", "mlflow/registered-models/search", q, "registered_models", [&](nlohmann::json& m) {
    auto model = RegisteredModel::from_json(m);
    if (seen.insert(model.name).second) out.push_back(std::move(model));
  });
  std::lock_guard lock(impl_->models_mutex);
  for (const auto& m : out)
    if (!m.name.empty()) impl_->known_models.insert(m.name);
  return out;
}

}  // namespace mlops
