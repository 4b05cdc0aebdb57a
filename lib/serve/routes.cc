#include "serve/routes.hpp"

#include <chrono>

#include "core/text.hpp"
#include "core/uri.hpp"
#include "mlops/error.hpp"
#include "mlops/version.hpp"
#include "serve/scoring.hpp"

namespace mlops::detail {

using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

RequestError error_of(const Error& e) {
  int status = 400;
  std::string reason = "bad_request";
  if (e.id() == "mlops.not_found") status = 404, reason = "not_found";
  else if (e.id() == "mlops.integrity") status = 422, reason = "integrity";
  else if (e.id() == "mlops.internal") status = 500, reason = "internal";
  else if (e.id() == "mlops.config") reason = "config";
  else if (e.id() == "mlops.data") reason = "bad_input";
  return RequestError(status, e.id(), reason, std::string(e.detail()));
}

HttpReply reply_of(const RequestError& e) { return {e.status(), dump(e.to_json())}; }

// The media type of a Content-Type value, lower case, without parameters ("Text/CSV; charset=utf-8" -> "text/csv").
std::string media_type(std::string_view content_type) {
  auto t = content_type.substr(0, content_type.find(';'));
  while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
  while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
  std::string out(t);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The media types a route's body may have: JSON everywhere, CSV where one model scores it.
void check_media_type(std::string_view content_type, bool csv_too) {
  const auto type = media_type(content_type);
  if (type == "application/json" || (csv_too && type == "text/csv")) return;
  throw RequestError(415, "mlops.data", "unsupported_content_type",
                     std::string("the body must be ") + (csv_too ? "application/json or text/csv" : "application/json") +
                         " (Content-Type), got " + (content_type.empty() ? "none" : quote_for_message(content_type)));
}

json parse_body(std::string_view body, std::string_view content_type) {
  check_media_type(content_type, false);
  auto j = json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded()) throw bad_request("malformed_json", "the request body is not valid JSON");
  return j;
}

const ServedModel& find_model(const Release& rel, const std::string& name) {
  const ServedModel* m = rel.find(name);
  if (!m)
    throw RequestError(404, "mlops.not_found", "unknown_model",
                       "release " + rel.md5() + " has no model " + quote_for_message(name));
  return *m;
}

// One model's predictions for one scoring body (JSON, or the CSV text when `csv`), recorded in the metrics.
json invoke(ServeState& state, const ServedModel& m, const json& body, const std::string_view* csv,
            std::size_t rows_before, std::size_t* rows) {
  const auto t0 = Clock::now();
  try {
    auto r = csv ? scoring_rows_csv(*csv, m.adapter, state.options.max_rows, rows_before)
                 : scoring_rows(body, m.adapter, state.options.max_rows, rows_before);
    auto labels = predict_labels(m.adapter, r);
    *rows = r.rows;
    state.metrics.model(m.name, m.version, false, r.rows, since(t0));
    state.shadow->offer(m, r, labels);
    return labels;
  } catch (...) {
    state.metrics.model(m.name, m.version, true, 0, since(t0));
    throw;
  }
}

HttpReply score(const HttpCall& call, ServeState& state, const std::shared_ptr<const Release>& rel, const ServedModel& m) {
  check_media_type(call.content_type, true);
  std::size_t rows = 0;
  json labels;
  if (media_type(call.content_type) == "text/csv") labels = invoke(state, m, json(), &call.body, 0, &rows);
  else labels = invoke(state, m, parse_body(call.body, call.content_type), nullptr, 0, &rows);
  return {200, dump(json{{"predictions", std::move(labels)}}), "application/json", rel->md5()};
}

HttpReply invocations(const HttpCall& call, ServeState& state, std::string_view name) {
  auto rel = state.release();
  return score(call, state, rel, find_model(*rel, percent_decode(name)));
}

// MLflow's own route: the model, when the release has exactly one.
HttpReply only_model_invocations(const HttpCall& call, ServeState& state, std::string_view) {
  auto rel = state.release();
  if (rel->models().size() != 1) {
    std::string names;
    for (const auto& m : rel->models()) names += (names.empty() ? "" : ", ") + m.name;
    throw RequestError(404, "mlops.not_found", "model_not_named",
                       "release " + rel->md5() + " has " + std::to_string(rel->models().size()) +
                           " models: POST /models/<name>/invocations with one of " + quote_for_message(names, 200));
  }
  return score(call, state, rel, rel->models().front());
}

// One answer per request of the batch: predictions, or the error of that request alone.
HttpReply batch(const HttpCall& call, ServeState& state, std::string_view) {
  auto rel = state.release();
  const json body = parse_body(call.body, call.content_type);
  if (!body.is_object() || !body.contains("requests") || !body["requests"].is_array())
    throw bad_request("malformed_input", "the batch body must be {\"requests\": [{\"model\": NAME, ...}, ...]}");
  std::size_t rows = 0;
  json responses = json::array();
  const auto& reqs = body["requests"];
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    const auto& item = reqs[i];
    try {
      if (!item.is_object() || !item.contains("model") || !item["model"].is_string())
        throw bad_request("malformed_input", "requests[" + std::to_string(i) + "] has no \"model\" name");
      const auto& m = find_model(*rel, item["model"].get_ref<const std::string&>());
      std::size_t n = 0;
      auto labels = invoke(state, m, item, nullptr, rows, &n);
      rows += n;
      responses.push_back({{"model", m.name}, {"predictions", std::move(labels)}});
    } catch (const RequestError& e) {
      json answer = e.to_json();
      answer["status"] = e.status();
      if (item.is_object() && item.contains("model")) answer["model"] = item["model"];
      responses.push_back(std::move(answer));
    }
  }
  return {200, dump(json{{"release", rel->md5()}, {"responses", std::move(responses)}}), "application/json", rel->md5()};
}

json models_json(const Release& rel) {
  json models = json::array();
  for (const auto& m : rel.models()) {
    json j = {{"name", m.name},
              {"version", m.version},
              {"data_commit", m.lineage.value("data_commit", "")},
              {"code_commit", m.lineage.value("code_commit", "")},
              {"classes", m.adapter.classes_json()},
              {"input", m.adapter.takes_text() ? "text" : "features"}};
    if (m.lineage.contains("run_id")) j["run_id"] = m.lineage["run_id"];
    if (m.adapter.takes_text()) j["text_column"] = m.adapter.text_featurizer().text();
    else j["features"] = m.adapter.features();
    models.push_back(std::move(j));
  }
  return {{"release", rel.md5()}, {"models", std::move(models)}};
}

// Constant-time comparison, so the token cannot be guessed byte by byte from response times.
bool same_secret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

// The admin token, checked before anything else is done for the request (RFC 6750: the scheme is
// case-insensitive).
void authorize(const HttpCall& call, const ServeState& state) {
  const auto& token = state.options.admin_token;
  if (token.empty())
    throw RequestError(403, "mlops.config", "admin_disabled", "the admin route is off: start the server with an admin token");
  auto auth = call.authorization;
  const bool bearer = auth.size() > 7 && auth[6] == ' ' && media_type(auth.substr(0, 6)) == "bearer";
  auto given = bearer ? auth.substr(7) : std::string_view();
  while (!given.empty() && given.front() == ' ') given.remove_prefix(1);
  if (!bearer || !same_secret(given, token))
    throw RequestError(401, "mlops.config", "unauthorized", "a valid bearer token is required");
}

HttpReply admin(const HttpCall& call, ServeState& state, std::string_view) {
  authorize(call, state);
  const json body = parse_body(call.body, call.content_type);
  if (!body.is_object() || !body.contains("release") || !body["release"].is_string() ||
      body["release"].get_ref<const std::string&>().empty())
    throw bad_request("malformed_input", "the admin body must be {\"release\": DIR | MD5 | alias}");
  const auto before = state.release();
  auto now = state.switch_to(body["release"].get<std::string>());
  return {200, dump(json{{"previous", before->md5()},
                         {"release", now->md5()},
                         {"image", state.options.image.empty() ? now->image() : state.options.image},
                         {"models", now->models().size()},
                         {"load_seconds", now->load_seconds()}})};
}

// {"release": DIR | MD5 | alias} sets the shadow release, {"release": null} clears it.
HttpReply admin_shadow(const HttpCall& call, ServeState& state, std::string_view) {
  authorize(call, state);
  const json body = parse_body(call.body, call.content_type);
  if (!body.is_object() || !body.contains("release") ||
      !(body["release"].is_null() || (body["release"].is_string() && !body["release"].get_ref<const std::string&>().empty())))
    throw bad_request("malformed_input", "the admin body must be {\"release\": DIR | MD5 | alias | null}");
  const auto before = state.shadow->release();
  auto now = state.switch_shadow(body["release"].is_null() ? std::string() : body["release"].get<std::string>());
  auto md5 = [](const std::shared_ptr<const Release>& r) { return r ? json(r->md5()) : json(nullptr); };
  return {200, dump(json{{"release", state.release()->md5()}, {"previous_shadow", md5(before)}, {"shadow", md5(now)},
                         {"shadowed_models", state.shadow->summary()["models"].size()}})};
}

HttpReply shadow_route(const HttpCall&, ServeState& state, std::string_view) {
  auto j = state.shadow->summary();
  j["release"] = state.release()->md5();
  return {200, dump(j)};
}

HttpReply ping(const HttpCall&, ServeState&, std::string_view) { return {200, "\n", "text/plain"}; }

HttpReply health(const HttpCall&, ServeState& state, std::string_view) {
  auto rel = state.release();
  return {200, dump(json{{"status", "ok"}, {"release", rel->md5()}, {"models", rel->models().size()}})};
}

HttpReply version_route(const HttpCall&, ServeState& state, std::string_view) {
  auto rel = state.release();
  return {200, dump(json{{"release", rel->md5()},
                         {"image", state.options.image.empty() ? rel->image() : state.options.image},
                         {"models", rel->models().size()},
                         {"mlops", version()}})};
}

HttpReply models(const HttpCall&, ServeState& state, std::string_view) {
  return {200, dump(models_json(*state.release()))};
}

HttpReply metrics(const HttpCall&, ServeState& state, std::string_view) {
  return {200, state.metrics_text(), "text/plain; version=0.0.4; charset=utf-8"};
}

using Handler = HttpReply (*)(const HttpCall&, ServeState&, std::string_view name);

// Every route, one line each. "{name}" matches one path segment (percent-encoded), given to the handler.
struct RouteEntry {
  std::string_view method;
  std::string_view path;
  Handler handler;
  Route metric;
  Work work;
};
constexpr RouteEntry kRoutes[] = {
    {"POST", "/models/{name}/invocations", invocations, Route::Invocations, Work::Scoring},
    {"POST", "/invocations", only_model_invocations, Route::Invocations, Work::Scoring},
    {"POST", "/invocations/batch", batch, Route::Batch, Work::Scoring},
    {"GET", "/ping", ping, Route::Ping, Work::Inline},
    {"GET", "/health", health, Route::Health, Work::Inline},
    {"GET", "/version", version_route, Route::Version, Work::Inline},
    {"GET", "/models", models, Route::Models, Work::Inline},
    {"GET", "/metrics", metrics, Route::Metrics, Work::Inline},
    {"GET", "/shadow", shadow_route, Route::Shadow, Work::Inline},
    {"POST", "/admin/release", admin, Route::Admin, Work::Admin},
    {"POST", "/admin/shadow", admin_shadow, Route::Admin, Work::Admin},
};

// Whether `path` fits the route's pattern; the {name} segment goes to `name`.
bool path_fits(std::string_view pattern, std::string_view path, std::string_view* name) {
  const auto brace = pattern.find("{name}");
  if (brace == std::string_view::npos) return pattern == path;
  const auto head = pattern.substr(0, brace), tail = pattern.substr(brace + 6);
  if (path.size() <= head.size() + tail.size() || path.substr(0, head.size()) != head ||
      path.substr(path.size() - tail.size()) != tail)
    return false;
  *name = path.substr(head.size(), path.size() - head.size() - tail.size());
  return name->find('/') == std::string_view::npos;
}

struct Found {
  const RouteEntry* entry = nullptr;
  std::string_view name;
  std::string allow;  // the methods the path takes, when the method is not one of them
};

Found find_route(std::string_view method, std::string_view path) {
  Found f;
  const std::string_view as = method == "HEAD" ? std::string_view("GET") : method;
  for (const auto& r : kRoutes) {
    std::string_view name;
    if (!path_fits(r.path, path, &name)) continue;
    if (r.method == as) {
      f.entry = &r;
      f.name = name;
      return f;
    }
    f.allow += (f.allow.empty() ? "" : ", ") + std::string(r.method) + (r.method == "GET" ? ", HEAD" : "");
  }
  return f;
}

std::string_view path_of(std::string_view target) { return target.substr(0, target.find('?')); }

// The error reply of a request no route takes: 405 with Allow, or 404.
HttpReply no_route(const Found& f, std::string_view method, std::string_view path) {
  if (!f.allow.empty()) {
    auto r = reply_of(RequestError(405, "mlops.data", "method_not_allowed",
                                   std::string(path.substr(0, 200)) + " takes " + f.allow + ", not " +
                                       quote_for_message(method)));
    r.allow = f.allow;
    return r;
  }
  return reply_of(RequestError(404, "mlops.not_found", "unknown_route", "no route " + quote_for_message(path, 200)));
}

// Runs `fn`, turning every exception into its JSON reply.
template <typename Fn>
HttpReply guarded(Fn&& fn) {
  try {
    return fn();
  } catch (const RequestError& e) {
    return reply_of(e);
  } catch (const Error& e) {
    return reply_of(error_of(e));
  } catch (const std::bad_alloc&) {
    return error_reply(503, "mlops.internal", "out_of_memory", "the server ran out of memory for this request");
  } catch (const std::exception& e) {
    return error_reply(500, "mlops.internal", "internal", std::string("unexpected failure: ") + e.what());
  }
}

}  // namespace

std::shared_ptr<const Release> ServeState::release() const {
  std::lock_guard lock(release_mu);
  return current;
}

std::string ServeState::metrics_text() const {
  auto rel = release();
  auto out = metrics.text(rel->md5(), options.image.empty() ? rel->image() : options.image,
                          {rel->models().size(), connections.load(), idle_connections.load(), buffered_bytes.load()});
  shadow->write_metrics(out);
  return out;
}

std::shared_ptr<const Release> ServeState::load(const std::string& name) const {
  std::filesystem::path dir(name);
  if (resolver) {
    try {
      dir = resolver(name);
    } catch (const Error&) {
      throw;
    } catch (const std::exception&) {
      throw ConfigError("release " + quote_for_message(name) + " could not be resolved to a release folder");
    }
  }
  return Release::load(dir);
}

std::shared_ptr<const Release> ServeState::switch_to(const std::string& name) {
  std::lock_guard serial(switch_mu);
  try {
    auto next = load(name);
    {
      std::lock_guard lock(release_mu);
      current = next;
    }
    metrics.release_switch(true);
    metrics.keep_models(*next);
    shadow->primary_switched(*next);
    return next;
  } catch (...) {
    metrics.release_switch(false);
    throw;
  }
}

std::shared_ptr<const Release> ServeState::switch_shadow(const std::string& name) {
  std::lock_guard serial(switch_mu);
  try {
    auto next = name.empty() ? nullptr : load(name);
    shadow->set(next, *release());
    metrics.release_switch(true);
    return next;
  } catch (...) {
    metrics.release_switch(false);
    throw;
  }
}

RouteMatch match_route(std::string_view method, std::string_view target) {
  const auto f = find_route(method, path_of(target));
  if (!f.entry) return {};
  const auto m = f.entry->metric;
  return {m, f.entry->work, true, m == Route::Ping || m == Route::Health || m == Route::Metrics};
}

std::optional<HttpReply> check_head(const HttpCall& head, ServeState& state) {
  const auto path = path_of(head.target);
  const auto f = find_route(head.method, path);
  if (!f.entry) return no_route(f, head.method, path);
  if (f.entry->method != "POST") return std::nullopt;
  auto r = guarded([&]() -> HttpReply {
    if (f.entry->work == Work::Admin) authorize(head, state);
    check_media_type(head.content_type, f.entry->metric == Route::Invocations);
    return {};
  });
  if (r.status == 200) return std::nullopt;
  r.route = f.entry->metric;
  return r;
}

HttpReply error_reply(int status, const std::string& id, const std::string& reason, const std::string& message) {
  return {status, dump(RequestError(status, id, reason, message).to_json())};
}

HttpReply handle_call(const HttpCall& call, ServeState& state) {
  const auto path = path_of(call.target);
  const auto f = find_route(call.method, path);
  if (!f.entry) return no_route(f, call.method, path);
  auto reply = guarded([&] { return f.entry->handler(call, state, f.name); });
  reply.route = f.entry->metric;
  return reply;
}

}  // namespace mlops::detail
