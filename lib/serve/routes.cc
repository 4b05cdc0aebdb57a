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
  return RequestError(status, e.id(), reason, e.what());
}

HttpReply reply_of(const RequestError& e) { return {e.status(), e.to_json()}; }

json parse_body(std::string_view body, std::string_view content_type) {
  if (!content_type.empty() && content_type.find("json") == std::string_view::npos)
    throw RequestError(415, "mlops.data", "unsupported_content_type",
                       "[mlops.data] the body must be JSON (Content-Type: application/json), got " +
                           quote_for_message(content_type));
  auto j = json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded()) throw bad_request("malformed_json", "the request body is not valid JSON");
  return j;
}

const ServedModel& find_model(const Release& rel, const std::string& name) {
  const ServedModel* m = rel.find(name);
  if (!m)
    throw RequestError(404, "mlops.not_found", "unknown_model",
                       "[mlops.not_found] release " + rel.md5() + " has no model " + quote_for_message(name));
  return *m;
}

// One model's predictions for one scoring body, recorded in the metrics.
json invoke(ServeState& state, const ServedModel& m, const json& body, std::size_t rows_before, std::size_t* rows) {
  const auto t0 = Clock::now();
  try {
    auto r = scoring_rows(body, m.adapter, state.options.max_rows, rows_before);
    auto labels = predict_labels(m.adapter, r);
    *rows = r.rows;
    state.metrics.model(m.name, false, r.rows, since(t0));
    return labels;
  } catch (...) {
    state.metrics.model(m.name, true, 0, since(t0));
    throw;
  }
}

HttpReply invocations(const HttpCall& call, ServeState& state, const std::string& name) {
  auto rel = state.release();
  const auto& m = find_model(*rel, name);
  const json body = parse_body(call.body, call.content_type);
  std::size_t rows = 0;
  json out = {{"predictions", invoke(state, m, body, 0, &rows)}};
  return {200, dump(out), "application/json", rel->md5()};
}

HttpReply batch(const HttpCall& call, ServeState& state) {
  auto rel = state.release();
  const json body = parse_body(call.body, call.content_type);
  if (!body.is_object() || !body.contains("requests") || !body["requests"].is_array())
    throw bad_request("malformed_input", "the batch body must be {\"requests\": [{\"model\": NAME, ...}, ...]}");
  std::size_t rows = 0;
  json responses = json::array();
  const auto& reqs = body["requests"];
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    const auto& item = reqs[i];
    if (!item.is_object() || !item.contains("model") || !item["model"].is_string())
      throw bad_request("malformed_input", "requests[" + std::to_string(i) + "] has no \"model\" name");
    const auto& name = item["model"].get_ref<const std::string&>();
    try {
      const auto& m = find_model(*rel, name);
      std::size_t n = 0;
      auto labels = invoke(state, m, item, rows, &n);
      rows += n;
      responses.push_back({{"model", name}, {"predictions", std::move(labels)}});
    } catch (const RequestError& e) {
      throw RequestError(e.status(), e.id(), e.reason(), std::string(e.what()) + " (requests[" + std::to_string(i) + "])");
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

HttpReply admin(const HttpCall& call, ServeState& state) {
  const auto& token = state.options.admin_token;
  if (token.empty())
    throw RequestError(403, "mlops.config", "admin_disabled",
                       "[mlops.config] the admin route is off: start the server with an admin token");
  const std::string_view prefix = "Bearer ";
  if (call.authorization.substr(0, prefix.size()) != prefix ||
      !same_secret(call.authorization.substr(prefix.size()), token))
    throw RequestError(401, "mlops.config", "unauthorized", "[mlops.config] a valid bearer token is required");
  const json body = parse_body(call.body, call.content_type);
  if (!body.is_object() || !body.contains("release") || !body["release"].is_string() ||
      body["release"].get_ref<const std::string&>().empty())
    throw bad_request("malformed_input", "the admin body must be {\"release\": DIR | MD5 | alias}");
  const auto before = state.release();
  std::shared_ptr<const Release> now;
  try {
    now = state.switch_to(body["release"].get<std::string>());
  } catch (const Error& e) {
    state.metrics.release_switch(false);
    throw;
  }
  state.metrics.release_switch(true);
  return {200, dump(json{{"previous", before->md5()},
                         {"release", now->md5()},
                         {"image", state.options.image.empty() ? now->image() : state.options.image},
                         {"models", now->models().size()},
                         {"load_seconds", now->load_seconds()}})};
}

Route route_of(std::string_view path) {
  if (path.rfind("/models/", 0) == 0) return Route::Invocations;
  if (path == "/invocations/batch") return Route::Batch;
  if (path == "/ping") return Route::Ping;
  if (path == "/health") return Route::Health;
  if (path == "/version") return Route::Version;
  if (path == "/models") return Route::Models;
  if (path == "/metrics") return Route::Metrics;
  if (path == "/admin/release") return Route::Admin;
  return Route::Other;
}

HttpReply dispatch(const HttpCall& call, ServeState& state, std::string_view path, Route route) {
  auto method_is = [&](std::string_view want) {
    if (call.method != want)
      throw RequestError(405, "mlops.data", "method_not_allowed",
                         "[mlops.data] " + std::string(path) + " takes " + std::string(want) + ", not " +
                             quote_for_message(call.method));
  };
  switch (route) {
    case Route::Invocations: {
      const std::string_view suffix = "/invocations";
      const auto rest = path.substr(8);
      if (rest.size() <= suffix.size() || rest.substr(rest.size() - suffix.size()) != suffix ||
          rest.substr(0, rest.size() - suffix.size()).find('/') != std::string_view::npos)
        throw RequestError(404, "mlops.not_found", "unknown_route", "[mlops.not_found] no route " + quote_for_message(path, 200));
      method_is("POST");
      return invocations(call, state, percent_decode(rest.substr(0, rest.size() - suffix.size())));
    }
    case Route::Batch: method_is("POST"); return batch(call, state);
    case Route::Ping: method_is("GET"); return {200, "\n", "text/plain"};
    case Route::Health: {
      method_is("GET");
      auto rel = state.release();
      return {200, dump(json{{"status", "ok"}, {"release", rel->md5()}, {"models", rel->models().size()}})};
    }
    case Route::Version: {
      method_is("GET");
      auto rel = state.release();
      return {200, dump(json{{"release", rel->md5()},
                             {"image", state.options.image.empty() ? rel->image() : state.options.image},
                             {"models", rel->models().size()},
                             {"mlops", version()}})};
    }
    case Route::Models: method_is("GET"); return {200, dump(models_json(*state.release()))};
    case Route::Metrics: {
      method_is("GET");
      auto rel = state.release();
      return {200, state.metrics.text(rel->md5(), state.options.image.empty() ? rel->image() : state.options.image,
                                      rel->models().size(), state.connections.load()),
              "text/plain; version=0.0.4; charset=utf-8"};
    }
    case Route::Admin: method_is("POST"); return admin(call, state);
    default:
      throw RequestError(404, "mlops.not_found", "unknown_route", "[mlops.not_found] no route " + quote_for_message(path, 200));
  }
}

}  // namespace

std::shared_ptr<const Release> ServeState::release() const {
  std::lock_guard lock(release_mu);
  return current;
}

std::shared_ptr<const Release> ServeState::switch_to(const std::string& name) {
  std::lock_guard serial(switch_mu);
  const auto dir = resolver ? resolver(name) : std::filesystem::path(name);
  auto next = Release::load(dir);
  std::lock_guard lock(release_mu);
  current = next;
  return next;
}

bool is_admin_call(const HttpCall& call) {
  const auto path = call.target.substr(0, call.target.find('?'));
  return path == "/admin/release";
}

HttpReply error_reply(int status, const std::string& id, const std::string& reason, const std::string& message) {
  return {status, RequestError(status, id, reason, "[" + id + "] " + message).to_json()};
}

HttpReply handle_call(const HttpCall& call, ServeState& state) {
  const auto t0 = Clock::now();
  const auto path = call.target.substr(0, call.target.find('?'));
  const Route route = route_of(path);
  HttpReply reply;
  try {
    reply = dispatch(call, state, path, route);
  } catch (const RequestError& e) {
    reply = reply_of(e);
  } catch (const Error& e) {
    reply = reply_of(error_of(e));
  } catch (const std::bad_alloc&) {
    reply = error_reply(503, "mlops.internal", "out_of_memory", "the server ran out of memory for this request");
  } catch (const std::exception& e) {
    reply = error_reply(500, "mlops.internal", "internal", std::string("unexpected failure: ") + e.what());
  }
  state.metrics.request(route, reply.status, since(t0));
  return reply;
}

}  // namespace mlops::detail
