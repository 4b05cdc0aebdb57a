// MlflowTracker: configuration, REST calls with typed errors, experiments, runs, registry, lineage.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "core/text.hpp"
#include "core/uri.hpp"
#include "mlflow/internal.hpp"
#include "mlops/error.hpp"
#include "mlops/tags.hpp"

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

}  // namespace

using detail::query_literal;
using detail::tag_list;
using detail::tag_map;

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
  if (!env("MLFLOW_HTTP_REQUEST_MAX_RETRIES").empty()) o.first_contact_seconds = 0;
  o.backoff_factor = env_number<double>("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", 2.0);
  o.backoff_jitter = env_number<double>("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", 1.0);
  o.timeout_seconds = env_number<long>("MLFLOW_HTTP_REQUEST_TIMEOUT", 120);
  return o;
}

// ---- Impl: HTTP and errors -------------------------------------------------------------------------

MlflowTracker::Impl::Impl(MlflowOptions opts) : options(std::move(opts)) {
  base = options.tracking_uri;
  while (!base.empty() && base.back() == '/') base.pop_back();
  shown = detail::redact_uri(base);
  if (base.empty())
    throw ConfigError("no MLflow tracking URI: pass one or set MLFLOW_TRACKING_URI");
  const auto uri = detail::Uri::parse(base);
  if (!uri || (uri->scheme != "http" && uri->scheme != "https"))
    throw ConfigError("MLflow tracking URI must be http:// or https://, got " + detail::quote_for_message(shown));
  // user:password@ in the URI is basic auth unless the options name a user; it never stays in the URL.
  if (uri->has_userinfo) {
    if (options.username.empty()) {
      options.username = detail::percent_decode(uri->user);
      options.password = detail::percent_decode(uri->password);
    }
    base = uri->without_userinfo();
  }
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
  retry.first_contact_seconds = options.first_contact_seconds;
  if (options.log_retries) {
    retry.on_retry = [shown = shown](const detail::HttpResponse& r, int n, double wait) {
      const std::string what = r.status == 0 ? "no answer (" + r.transport_error + ")"
                                             : "HTTP " + std::to_string(r.status);
      std::fprintf(stderr, "mlops: MLflow at %s: %s; retry %d in %.1f s\n", shown.c_str(), what.c_str(), n, wait);
    };
  }
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
  // An attempt whose answer was lost may have been applied: create again only after a lookup has
  // answered "not there". A lookup that fails is retried; when it never answers, nothing is created
  // again and the caller gets a TrackingError.
  detail::RetryPolicy policy;
  policy.backoff_factor = options.backoff_factor;
  policy.backoff_jitter = options.backoff_jitter;
  auto lookup = [&]() -> std::optional<nlohmann::json> {
    for (int n = 1;; ++n) {
      try {
        return find();
      } catch (const Error& e) {
        const auto* t = dynamic_cast<const TrackingError*>(&e);
        const int status = t ? t->http_status() : 0;
        const bool retryable = t && (status == 0 || status == 429 || status >= 500);
        if (!retryable || n > options.max_retries)
          throw TrackingError(what + ": an attempt's answer was lost and the lookup that would tell whether it was "
                                     "applied failed (" + std::string(e.detail()) + "); not creating it again",
                              status, t ? t->error_code() : std::string());
        std::this_thread::sleep_for(std::chrono::duration<double>(policy.backoff(n)));
      }
    }
  };
  auto as_response = [](const nlohmann::json& found) {
    detail::HttpResponse r;
    r.status = 200;
    r.body = found.dump();
    return r;
  };
  auto before_retry = [&]() -> std::optional<detail::HttpResponse> {
    if (auto found = lookup()) return as_response(*found);
    return std::nullopt;
  };
  auto r = http->send(req, before_retry);
  // The last attempt's answer lost too: it may still have been applied.
  if (r.retryable())
    if (auto found = lookup()) r = as_response(*found);
  if (r.status < 200 || r.status >= 300) raise(r, what);
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_discarded())
    throw TrackingError(what + " at " + shown + ": the answer is not JSON: " + detail::quote_for_message(r.body, 200),
                        static_cast<int>(r.status));
  return j;
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

const std::string& MlflowTracker::tracking_uri() const { return impl_->shown; }
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
  all[tags::kUser] = user ? user : std::to_string(::getuid());
  if (!src.source_name.empty()) all[tags::kSourceName] = src.source_name;
  all[tags::kSourceType] = src.source_type.empty() ? "LOCAL" : src.source_type;
  if (!src.commit.empty()) {
    all[tags::kGitCommit] = src.commit;
    all[tags::kGitDirty] = src.dirty ? "true" : "false";
  }
  if (!src.branch.empty()) all[tags::kGitBranch] = src.branch;
  if (!src.repo_url.empty()) all[tags::kGitRepoUrl] = src.repo_url;
  for (const auto& [k, v] : tags) {
    detail::validate_key(k, "tag");
    all[k] = v;
  }
  if (!run_name.empty()) all[tags::kRunName] = run_name;
  // A client-made id: a create whose answer was lost is found again instead of creating a second run.
  const std::string request_id = detail::random_hex_id();
  all[tags::kClientRequestId] = request_id;

  nlohmann::json body = {{"experiment_id", exp}, {"start_time", detail::now_ms()}, {"tags", tag_list(all)}};
  if (!run_name.empty()) body["run_name"] = run_name;
  auto find_created = [&]() -> std::optional<nlohmann::json> {
    auto found = impl_->call("POST", "mlflow/runs/search",
                             {{"experiment_ids", {exp}},
                              {"filter", std::string("tags.`") + tags::kClientRequestId + "` = " + query_literal(request_id)},
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

RunInfo MlflowTracker::get_run(const std::string& run_id) {
  return RunInfo::from_json(impl_->call("GET", "mlflow/runs/get", {{"run_id", run_id}}).at("run"));
}

std::vector<RunInfo> MlflowTracker::search_runs(const std::vector<std::string>& experiment_ids,
                                                const std::string& filter, int page_size) {
  if (page_size <= 0 || page_size > 50000) throw ConfigError("page_size must be in 1..50000");
  std::vector<RunInfo> out;
  nlohmann::json body = {{"experiment_ids", experiment_ids}, {"max_results", page_size}};
  if (!filter.empty()) body["filter"] = filter;
  impl_->each_page("POST", "mlflow/runs/search", body, "runs",
                   [&](nlohmann::json& r) { out.push_back(RunInfo::from_json(r)); });
  return out;
}

void MlflowTracker::end_run(const std::string& run_id, RunStatus status, std::int64_t end_time_ms) {
  impl_->end_run(run_id, status, end_time_ms < 0 ? detail::now_ms() : end_time_ms);
}

void MlflowTracker::set_run_tag(const std::string& run_id, const std::string& key, const std::string& value) {
  detail::validate_key(key, "tag");
  impl_->call("POST", "mlflow/runs/set-tag", {{"run_id", run_id}, {"key", key}, {"value", value}});
}

void MlflowTracker::log_metrics(const std::string& run_id, const std::map<std::string, double>& metrics,
                                std::int64_t step) {
  if (metrics.size() > 1000)
    throw DataError("run " + run_id + ": " + std::to_string(metrics.size()) + " metrics in one call, at most 1000");
  auto list = nlohmann::json::array();
  const std::int64_t now = detail::now_ms();
  for (const auto& [key, value] : metrics) {
    detail::validate_key(key, "metric");
    if (!std::isfinite(value)) throw DataError("metric '" + key + "' of run " + run_id + " is not finite");
    list.push_back({{"key", key}, {"value", value}, {"timestamp", now}, {"step", step}});
  }
  if (list.empty()) return;
  impl_->call("POST", "mlflow/runs/log-batch", {{"run_id", run_id}, {"metrics", list}});
}

std::vector<nlohmann::json> MlflowTracker::metric_history(const std::string& run_id, const std::string& key) {
  std::vector<nlohmann::json> out;
  impl_->each_page("GET", "mlflow/metrics/get-history", {{"run_id", run_id}, {"metric_key", key}, {"max_results", 25000}},
                   "metrics", [&](nlohmann::json& m) { out.push_back(std::move(m)); });
  return out;
}

nlohmann::json MlflowTracker::lineage(const std::string& name, std::int64_t version) {
  const ModelVersion mv = get_model_version(name, version);
  nlohmann::json out = {{"name", name}, {"version", version}, {"run_id", mv.run_id}, {"model_source", mv.source}};
  if (mv.run_id.empty()) return out;
  // The run's dataset inputs are read here only: RunInfo has the rest.
  const auto raw = impl_->call("GET", "mlflow/runs/get", {{"run_id", mv.run_id}}).at("run");
  const RunInfo run = RunInfo::from_json(raw);
  out["code_commit"] = run.tag(tags::kGitCommit);
  out["code_branch"] = run.tag(tags::kGitBranch);
  out["code_repo_url"] = run.tag(tags::kGitRepoUrl);
  out["code_dirty"] = run.tag(tags::kGitDirty) == "true";
  out["data_commit"] = run.tag(tags::kDataCommit);
  out["data_uri"] = run.tag(tags::kDataUri);
  out["table"] = run.tag(tags::kDataTable);
  out["query_sha256"] = run.tag(tags::kDataQuerySha256);
  out["digest"] = run.tag(tags::kDataDigest);
  out["query"] = "";
  nlohmann::json datasets = nlohmann::json::array();
  for (const auto& in : raw.value("inputs", nlohmann::json::object()).value("dataset_inputs", nlohmann::json::array())) {
    const auto& ds = in.value("dataset", nlohmann::json::object());
    nlohmann::json entry = {{"name", ds.value("name", "")}, {"digest", ds.value("digest", "")},
                            {"source_type", ds.value("source_type", "")}};
    auto source = nlohmann::json::parse(ds.value("source", "{}"), nullptr, false);
    entry["source"] = source.is_discarded() ? nlohmann::json(ds.value("source", "")) : source;
    auto itags = tag_map(in.value("tags", nlohmann::json::array()));
    entry["context"] = itags[tags::kDataContext];
    if (source.is_object() && out["query"] == "" && source.value("commit", "") == out["data_commit"]) {
      out["query"] = source.value("query", "");
      out["query_params"] = source.value("params", nlohmann::json::array());
      out["data_ref"] = source.value("ref", "");
    }
    datasets.push_back(std::move(entry));
  }
  out["datasets"] = std::move(datasets);
  out["params"] = run.params;
  nlohmann::json metrics = nlohmann::json::object();
  for (const auto& m : raw.value("data", nlohmann::json::object()).value("metrics", nlohmann::json::array()))
    metrics[m.value("key", "")] = m.value("value", nlohmann::json());
  out["metrics"] = std::move(metrics);
  nlohmann::json user_tags = nlohmann::json::object();
  for (const auto& [k, v] : run.tags)
    if (k.rfind(tags::kMlflowPrefix, 0) != 0 && k.rfind(tags::kMlopsPrefix, 0) != 0) user_tags[k] = v;
  out["tags"] = std::move(user_tags);
  return out;
}

std::filesystem::path MlflowTracker::download_artifacts(const std::string& artifact_uri,
                                                        const std::filesystem::path& dest_dir) {
  return impl_->download(impl_->artifact_root(artifact_uri), dest_dir);
}

std::string MlflowTracker::read_artifact(const std::string& artifact_uri) {
  return impl_->read(impl_->artifact_root(artifact_uri));
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
