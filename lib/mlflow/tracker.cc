// MlflowTracker: configuration, REST calls with typed errors, experiments, runs, registry, lineage.
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <cstdlib>
#include <thread>
#include <set>

#include "core/text.hpp"
#include "mlflow/internal.hpp"
#include "mlops/error.hpp"

namespace mlops {

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

template <typename T>
T env_number(const char* name, T fallback) {
  const std::string text = env(name);
  if (text.empty()) return fallback;
  try {
    std::size_t used = 0;
    double v = std::stod(text, &used);
    if (used != text.size() || v < 0) throw std::invalid_argument(name);
    return static_cast<T>(v);
  } catch (const std::exception&) {
    throw ConfigError(std::string(name) + " must be a non-negative number, got " + detail::quote_for_message(text));
  }
}

bool env_bool(const char* name) {
  std::string v = env(name);
  for (auto& c : v) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (v.empty() || v == "false" || v == "0" || v == "no") return false;
  if (v == "true" || v == "1" || v == "yes") return true;
  throw ConfigError(std::string(name) + " must be true or false, got " + detail::quote_for_message(v));
}

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

}  // namespace

// ---- Options, value types ---------------------------------------------------------------------------

MlflowOptions MlflowOptions::from_env(const std::string& tracking_uri) {
  MlflowOptions o;
  o.tracking_uri = tracking_uri.empty() ? env("MLFLOW_TRACKING_URI") : tracking_uri;
  o.username = env("MLFLOW_TRACKING_USERNAME");
  o.password = env("MLFLOW_TRACKING_PASSWORD");
  o.token = env("MLFLOW_TRACKING_TOKEN");
  o.insecure_tls = env_bool("MLFLOW_TRACKING_INSECURE_TLS");
  o.server_cert_path = env("MLFLOW_TRACKING_SERVER_CERT_PATH");
  o.client_cert_path = env("MLFLOW_TRACKING_CLIENT_CERT_PATH");
  o.max_retries = env_number<int>("MLFLOW_HTTP_REQUEST_MAX_RETRIES", 7);
  o.backoff_factor = env_number<double>("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", 2.0);
  o.backoff_jitter = env_number<double>("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", 1.0);
  o.timeout_seconds = env_number<long>("MLFLOW_HTTP_REQUEST_TIMEOUT", 120);
  return o;
}

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

// ---- Impl: HTTP and errors -------------------------------------------------------------------------

MlflowTracker::Impl::Impl(MlflowOptions opts) : options(std::move(opts)) {
  base = options.tracking_uri;
  while (!base.empty() && base.back() == '/') base.pop_back();
  shown = detail::redact_url(base);
  if (base.empty())
    throw ConfigError("no MLflow tracking URI: pass one or set MLFLOW_TRACKING_URI");
  if (base.rfind("http://", 0) != 0 && base.rfind("https://", 0) != 0)
    throw ConfigError("MLflow tracking URI must be http:// or https://, got " + detail::quote_for_message(shown));
  if (options.insecure_tls && !options.server_cert_path.empty())
    throw ConfigError(
        "MLFLOW_TRACKING_INSECURE_TLS and MLFLOW_TRACKING_SERVER_CERT_PATH cannot be used together");
  if (options.max_retries < 0) throw ConfigError("max_retries must be >= 0");
  if (options.timeout_seconds <= 0) throw ConfigError("timeout_seconds must be > 0");
  if (options.queue_capacity == 0) throw ConfigError("queue_capacity must be > 0");
  detail::TlsOptions tls;
  tls.verify = !options.insecure_tls;
  tls.ca_path = options.server_cert_path;
  tls.client_cert = options.client_cert_path;
  detail::RetryPolicy retry;
  retry.max_retries = options.max_retries;
  retry.backoff_factor = options.backoff_factor;
  retry.backoff_jitter = options.backoff_jitter;
  http = std::make_unique<detail::HttpClient>(tls, detail::HttpAuth{options.username, options.password, options.token},
                                              options.timeout_seconds, retry);
  spool_dir = options.spool_dir.empty()
                  ? std::filesystem::temp_directory_path() / ("mlops-spool-" + std::to_string(::getuid()))
                  : options.spool_dir;
}

std::string MlflowTracker::Impl::api_url(const std::string& path, const nlohmann::json& query) const {
  std::string url = base + "/api/2.0/" + path;
  if (!query.is_object() || query.empty()) return url;
  char sep = '?';
  auto add = [&](const std::string& k, const nlohmann::json& v) {
    if (v.is_null()) return;
    url += sep;
    sep = '&';
    url += detail::url_escape(k) + "=" + detail::url_escape(v.is_string() ? v.get<std::string>() : v.dump());
  };
  for (auto it = query.begin(); it != query.end(); ++it) {
    if (it.value().is_array()) {
      for (const auto& v : it.value()) add(it.key(), v);
    } else {
      add(it.key(), it.value());
    }
  }
  return url;
}

detail::HttpResponse MlflowTracker::Impl::send(const std::string& method, const std::string& path,
                                               const nlohmann::json& body, int retries) {
  detail::HttpRequest req;
  req.method = method;
  if (method == "GET") {
    req.url = api_url(path, body);
  } else {
    req.url = api_url(path);
    req.body = body.is_null() ? "{}" : body.dump();
  }
  return retries < 0 ? http->send(req) : http->send_with_retries(req, retries);
}

void MlflowTracker::Impl::raise(const detail::HttpResponse& r, const std::string& what) const {
  if (r.status == 0)
    throw TrackingError(what + ": no answer from " + shown + " after " + std::to_string(r.attempts) +
                        " attempt(s): " + r.transport_error);
  std::string code, message;
  const auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_object() && j.contains("error_code")) {
    code = j.value("error_code", "");
    message = j.value("message", "");
  } else {
    message = detail::quote_for_message(r.body, 300);
  }
  if (code == "RESOURCE_DOES_NOT_EXIST") throw NotFoundError(what + ": " + message);
  if (code == "RESOURCE_ALREADY_EXISTS") throw ConflictError(what + ": " + message);
  std::string hint;
  if (r.status == 401 || r.status == 403)
    hint = " (the server refused the credentials: check MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or "
           "MLFLOW_TRACKING_TOKEN)";
  throw TrackingError(what + " at " + shown + ": HTTP " + std::to_string(r.status) + (code.empty() ? "" : " " + code) +
                          ": " + message + hint,
                      static_cast<int>(r.status), code);
}

nlohmann::json MlflowTracker::Impl::call(const std::string& method, const std::string& path,
                                         const nlohmann::json& body, int retries) {
  auto r = send(method, path, body, retries);
  if (r.status < 200 || r.status >= 300) raise(r, method + " " + path);
  if (r.body.empty()) return nlohmann::json::object();
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_discarded())
    throw TrackingError(method + " " + path + " at " + shown + ": the answer is not JSON: " +
                            detail::quote_for_message(r.body, 200),
                        static_cast<int>(r.status));
  return j;
}

nlohmann::json MlflowTracker::Impl::create_once(const std::string& path, const nlohmann::json& body,
                                                const std::function<std::optional<nlohmann::json>()>& find,
                                                const std::string& what) {
  detail::HttpRequest req;
  req.method = "POST";
  req.url = api_url(path);
  req.body = body.dump();
  auto before_retry = [&]() -> std::optional<detail::HttpResponse> {
    try {
      if (auto found = find()) {
        detail::HttpResponse r;
        r.status = 200;
        r.body = found->dump();
        return r;
      }
    } catch (const Error&) {
      // Not reachable yet: the retry itself will tell.
    }
    return std::nullopt;
  };
  auto r = http->send(req, before_retry);
  if (r.status < 200 || r.status >= 300) raise(r, what);
  return nlohmann::json::parse(r.body);
}

void MlflowTracker::Impl::each_page(const std::string& method, const std::string& path, nlohmann::json request,
                                    const char* items, const std::function<void(nlohmann::json&)>& fn) {
  std::string token;
  do {
    if (!token.empty()) request["page_token"] = token;
    auto j = call(method, path, request);
    if (j.contains(items))
      for (auto& item : j[items]) fn(item);
    token = j.value("next_page_token", "");
  } while (!token.empty());
}

std::string MlflowTracker::Impl::experiment_id(const std::string& name) {
  if (name.empty()) throw ConfigError("experiment name must not be empty");
  {
    std::lock_guard lock(experiments_mutex);
    if (auto it = experiments.find(name); it != experiments.end()) return it->second;
  }
  auto get = [&]() -> std::string {
    auto j = call("GET", "mlflow/experiments/get-by-name", {{"experiment_name", name}});
    return j.at("experiment").at("experiment_id").get<std::string>();
  };
  std::string id;
  try {
    id = get();
  } catch (const NotFoundError&) {
    try {
      id = call("POST", "mlflow/experiments/create", {{"name", name}}).at("experiment_id").get<std::string>();
    } catch (const ConflictError&) {
      id = get();  // another process created it first
    }
  }
  std::lock_guard lock(experiments_mutex);
  experiments[name] = id;
  return id;
}

// ---- MlflowTracker ---------------------------------------------------------------------------------

MlflowTracker::MlflowTracker(const std::string& tracking_uri)
    : MlflowTracker(MlflowOptions::from_env(tracking_uri)) {}

MlflowTracker::MlflowTracker(MlflowOptions options) : impl_(std::make_shared<Impl>(std::move(options))) {}

MlflowTracker::~MlflowTracker() = default;

const std::string& MlflowTracker::tracking_uri() const { return impl_->base; }
const MlflowOptions& MlflowTracker::options() const { return impl_->options; }

std::string MlflowTracker::experiment_id(const std::string& name) { return impl_->experiment_id(name); }

nlohmann::json MlflowTracker::call(const std::string& method, const std::string& path, const nlohmann::json& body) {
  return impl_->call(method, path, body);
}

Run MlflowTracker::start_run(const std::string& experiment, const std::string& run_name,
                             const std::map<std::string, std::string>& tags) {
  const std::string exp = impl_->experiment_id(experiment);
  std::call_once(impl_->source_once, [&] { impl_->source = detect_source_info(); });
  const SourceInfo& src = impl_->source;
  std::map<std::string, std::string> all;
  const char* user = std::getenv("USER");
  all["mlflow.user"] = user ? user : std::to_string(::getuid());
  if (!src.source_name.empty()) all["mlflow.source.name"] = src.source_name;
  all["mlflow.source.type"] = src.source_type.empty() ? "LOCAL" : src.source_type;
  if (!src.commit.empty()) {
    all["mlflow.source.git.commit"] = src.commit;
    all["mlflow.source.git.dirty"] = src.dirty ? "true" : "false";
  }
  if (!src.branch.empty()) all["mlflow.source.git.branch"] = src.branch;
  if (!src.repo_url.empty()) all["mlflow.source.git.repoURL"] = src.repo_url;
  for (const auto& [k, v] : tags) {
    detail::validate_key(k, "tag");
    all[k] = v;
  }
  if (!run_name.empty()) all["mlflow.runName"] = run_name;
  // A client-made id: a create whose answer was lost is found again instead of creating a second run.
  const std::string request_id = detail::random_hex_id();
  all["mlops.client_request_id"] = request_id;

  nlohmann::json body = {{"experiment_id", exp}, {"start_time", detail::now_ms()}, {"tags", tag_list(all)}};
  if (!run_name.empty()) body["run_name"] = run_name;
  auto find_created = [&]() -> std::optional<nlohmann::json> {
    auto found = impl_->call("POST", "mlflow/runs/search",
                             {{"experiment_ids", {exp}},
                              {"filter", "tags.`mlops.client_request_id` = " + query_literal(request_id)},
                              {"max_results", 1}},
                             0);
    if (found.contains("runs") && !found["runs"].empty()) return nlohmann::json{{"run", found["runs"][0]}};
    return std::nullopt;
  };
  const auto j = impl_->create_once("mlflow/runs/create", body, find_created,
                                    "creating a run in experiment " + detail::quote_for_message(experiment));
  const auto& info = j.at("run").at("info");

  auto state = std::make_shared<Run::State>();
  state->tracker = impl_;
  state->run_id = info.at("run_id").get<std::string>();
  state->experiment_id = exp;
  state->name = info.value("run_name", run_name);
  state->artifact_uri = info.value("artifact_uri", "");
  if (impl_->options.async_logging) state->sender = std::make_unique<Sender>(impl_, state->run_id);
  return Run(state);
}

nlohmann::json MlflowTracker::get_run(const std::string& run_id) {
  return impl_->call("GET", "mlflow/runs/get", {{"run_id", run_id}}).at("run");
}

std::vector<nlohmann::json> MlflowTracker::search_runs(const std::vector<std::string>& experiment_ids,
                                                       const std::string& filter, int page_size) {
  if (page_size <= 0 || page_size > 50000) throw ConfigError("page_size must be in 1..50000");
  std::vector<nlohmann::json> out;
  nlohmann::json body = {{"experiment_ids", experiment_ids}, {"max_results", page_size}};
  if (!filter.empty()) body["filter"] = filter;
  impl_->each_page("POST", "mlflow/runs/search", body, "runs", [&](nlohmann::json& r) { out.push_back(std::move(r)); });
  return out;
}

std::vector<nlohmann::json> MlflowTracker::metric_history(const std::string& run_id, const std::string& key) {
  std::vector<nlohmann::json> out;
  impl_->each_page("GET", "mlflow/metrics/get-history", {{"run_id", run_id}, {"metric_key", key}, {"max_results", 25000}},
                   "metrics", [&](nlohmann::json& m) { out.push_back(std::move(m)); });
  return out;
}

// ---- Registry ---------------------------------------------------------------------------------------

void MlflowTracker::create_registered_model(const std::string& name, const std::map<std::string, std::string>& tags,
                                            const std::string& description) {
  if (name.empty()) throw ConfigError("registered model name must not be empty");
  nlohmann::json body = {{"name", name}};
  if (!tags.empty()) body["tags"] = tag_list(tags);
  if (!description.empty()) body["description"] = description;
  try {
    impl_->call("POST", "mlflow/registered-models/create", body);
  } catch (const ConflictError&) {
    // Exists already (maybe created by a concurrent process): that is what was asked for.
  }
  std::lock_guard lock(impl_->models_mutex);
  impl_->known_models.insert(name);
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
  all["mlops.client_request_id"] = request_id;
  nlohmann::json body = {{"name", name}, {"source", source}, {"run_id", run.id()}, {"tags", tag_list(all)}};
  auto find_created = [&]() -> std::optional<nlohmann::json> {
    auto found = impl_->call("GET", "mlflow/model-versions/search",
                             {{"filter", "name = " + query_literal(name) + " and run_id = " + query_literal(run.id())},
                              {"max_results", 1000}},
                             0);
    for (const auto& mv : found.value("model_versions", nlohmann::json::array()))
      if (tag_map(mv.value("tags", nlohmann::json::array()))["mlops.client_request_id"] == request_id)
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

nlohmann::json MlflowTracker::get_registered_model(const std::string& name) {
  return impl_->call("GET", "mlflow/registered-models/get", {{"name", name}}).at("registered_model");
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

std::vector<nlohmann::json> MlflowTracker::search_registered_models(const std::string& filter, int page_size) {
  if (page_size <= 0 || page_size > 1000) throw ConfigError("page_size must be in 1..1000");
  std::vector<nlohmann::json> out;
  nlohmann::json q = {{"max_results", page_size}};
  if (!filter.empty()) q["filter"] = filter;
  // Ordered by name (the server's default); a model created while the pages are read repeats one.
  std::set<std::string> seen;
  impl_->each_page("GET", "mlflow/registered-models/search", q, "registered_models", [&](nlohmann::json& m) {
    if (seen.insert(m.value("name", "")).second) out.push_back(std::move(m));
  });
  std::lock_guard lock(impl_->models_mutex);
  for (const auto& m : out)
    if (m.contains("name") && m["name"].is_string()) impl_->known_models.insert(m["name"].get<std::string>());
  return out;
}

nlohmann::json MlflowTracker::lineage(const std::string& name, std::int64_t version) {
  const ModelVersion mv = get_model_version(name, version);
  nlohmann::json out = {{"name", name}, {"version", version}, {"run_id", mv.run_id}, {"model_source", mv.source}};
  if (mv.run_id.empty()) return out;
  const auto run = get_run(mv.run_id);
  const auto data = run.value("data", nlohmann::json::object());
  auto tags = tag_map(data.value("tags", nlohmann::json::array()));
  auto tag = [&](const char* k) { return tags.count(k) ? tags[k] : std::string(); };
  out["code_commit"] = tag("mlflow.source.git.commit");
  out["code_branch"] = tag("mlflow.source.git.branch");
  out["code_repo_url"] = tag("mlflow.source.git.repoURL");
  out["code_dirty"] = tag("mlflow.source.git.dirty") == "true";
  out["data_commit"] = tag("mlops.data.commit");
  out["data_uri"] = tag("mlops.data.uri");
  out["table"] = tag("mlops.data.table");
  out["query_sha256"] = tag("mlops.data.query_sha256");
  out["digest"] = tag("mlops.data.digest");
  out["query"] = "";
  nlohmann::json datasets = nlohmann::json::array();
  for (const auto& in : run.value("inputs", nlohmann::json::object()).value("dataset_inputs", nlohmann::json::array())) {
    const auto& ds = in.value("dataset", nlohmann::json::object());
    nlohmann::json entry = {{"name", ds.value("name", "")}, {"digest", ds.value("digest", "")},
                            {"source_type", ds.value("source_type", "")}};
    auto source = nlohmann::json::parse(ds.value("source", "{}"), nullptr, false);
    entry["source"] = source.is_discarded() ? nlohmann::json(ds.value("source", "")) : source;
    auto itags = tag_map(in.value("tags", nlohmann::json::array()));
    entry["context"] = itags["mlflow.data.context"];
    if (source.is_object() && out["query"] == "" && source.value("commit", "") == out["data_commit"]) {
      out["query"] = source.value("query", "");
      out["query_params"] = source.value("params", nlohmann::json::array());
      out["data_ref"] = source.value("ref", "");
    }
    datasets.push_back(std::move(entry));
  }
  out["datasets"] = std::move(datasets);
  nlohmann::json params = nlohmann::json::object();
  for (const auto& p : data.value("params", nlohmann::json::array())) params[p.value("key", "")] = p.value("value", "");
  out["params"] = std::move(params);
  nlohmann::json metrics = nlohmann::json::object();
  for (const auto& m : data.value("metrics", nlohmann::json::array())) metrics[m.value("key", "")] = m.value("value", nlohmann::json());
  out["metrics"] = std::move(metrics);
  nlohmann::json user_tags = nlohmann::json::object();
  for (const auto& [k, v] : tags)
    if (k.rfind("mlflow.", 0) != 0 && k.rfind("mlops.", 0) != 0) user_tags[k] = v;
  out["tags"] = std::move(user_tags);
  return out;
}

std::filesystem::path MlflowTracker::download_artifacts(const std::string& artifact_uri,
                                                        const std::filesystem::path& dest_dir) {
  return impl_->download(impl_->artifact_root(artifact_uri), dest_dir);
}

std::size_t MlflowTracker::deliver_spooled() {
  std::size_t delivered = 0;
  std::error_code ec;
  if (!std::filesystem::is_directory(impl_->spool_dir, ec)) return 0;
  for (const auto& entry : std::filesystem::directory_iterator(impl_->spool_dir, ec)) {
    if (entry.path().extension() != ".jsonl") continue;
    std::ifstream in(entry.path());
    std::string line;
    bool all = true;
    while (std::getline(in, line)) {
      const auto body = nlohmann::json::parse(line, nullptr, false);
      if (body.is_discarded()) continue;
      auto r = impl_->send("POST", "mlflow/runs/log-batch", body);
      if (r.retryable()) {
        all = false;
        break;
      }
      if (r.status < 200 || r.status >= 300) impl_->raise(r, "delivering " + entry.path().string());
      ++delivered;
    }
    in.close();
    if (all) std::filesystem::remove(entry.path(), ec);
    else impl_->raise(detail::HttpResponse{}, "delivering " + entry.path().string());
  }
  return delivered;
}

}  // namespace mlops
