// The server's routes without the HTTP transport: a request's method, target, headers and body in, a
// status and body out (internal). The transport (server.cc) only moves bytes.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "mlops/serve.hpp"
#include "serve/metrics.hpp"
#include "serve/shadow.hpp"

namespace mlops::detail {

/// What every connection shares: the settings, the current release and the metrics.
struct ServeState {
  ServerOptions options;
  ReleaseResolver resolver;
  std::string initial;  ///< the release name the server started with (what SIGHUP reloads)
  Metrics metrics;
  std::atomic<std::size_t> connections{0};
  std::atomic<std::size_t> idle_connections{0};
  std::atomic<std::size_t> buffered_bytes{0};  ///< request body bytes reserved by all connections

  /// The Prometheus text of /metrics.
  [[nodiscard]] std::string metrics_text() const;

  /// The current release (a counted reference: requests keep theirs alive across a switch).
  [[nodiscard]] std::shared_ptr<const Release> release() const;
  /// Resolves and loads `name` beside the current release and swaps; serialised; counted in the metrics
  /// (ok or failed). The old release stays on failure. A resolver failure that is not an mlops::Error is
  /// reported as a ConfigError naming the release (its own text, which may hold paths, is not shown).
  std::shared_ptr<const Release> switch_to(const std::string& name);

  /// Resolves and loads `name` as the shadow release ("" clears it); serialised with switch_to. The old
  /// shadow stays on failure. @returns the new shadow release (nullptr when cleared)
  std::shared_ptr<const Release> switch_shadow(const std::string& name);
  /// Resolves `name` through the resolver and loads it (the errors of switch_to).
  [[nodiscard]] std::shared_ptr<const Release> load(const std::string& name) const;

  mutable std::mutex release_mu;
  std::shared_ptr<const Release> current;
  std::mutex switch_mu;
  std::string initial_shadow;     ///< the shadow release named at start (what SIGHUP reloads); may be empty
  /// The shadow release and its thread (none until a shadow release is set); the server sizes its queue.
  std::unique_ptr<Shadow> shadow = std::make_unique<Shadow>(ServerOptions{}.shadow_queue);
};

struct HttpCall {
  std::string_view method;
  std::string_view target;
  std::string_view content_type;
  std::string_view authorization;
  std::string_view body;
};

struct HttpReply {
  HttpReply() = default;
  HttpReply(int s, std::string b, std::string type = "application/json", std::string rel = {})
      : status(s), body(std::move(b)), content_type(std::move(type)), release(std::move(rel)) {}
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::string release;  ///< MD5 of the release that answered (sent as X-Mlops-Release), when one did
  std::string allow;    ///< the Allow header of a 405
  Route route = Route::Other;  ///< the route the metrics count it under
};

/// Where the transport runs a route: on its I/O thread (cheap), on the scoring pool, or on the one
/// release-loading worker.
enum class Work { Inline, Scoring, Admin };

/// The route of a request, known from its method and target alone.
struct RouteMatch {
  Route metric = Route::Other;
  Work work = Work::Inline;
  bool found = false;      ///< path and method name a route
  bool essential = false;  ///< /ping, /health, /metrics: answered even past the connection limit
};
RouteMatch match_route(std::string_view method, std::string_view target);

/// What can be decided from the request head alone (unknown route, wrong method, admin token, media
/// type), so such a request is refused before its body is read or any work is queued. nullopt: go on.
std::optional<HttpReply> check_head(const HttpCall& head, ServeState& state);
/// Answers one request (every route; the admin route blocks). Never throws: errors become JSON replies.
/// HEAD is answered as GET (the transport sends no body).
HttpReply handle_call(const HttpCall& call, ServeState& state);
/// Reads `raw` as one request the way a connection does (the size limits of state.options, strict framing,
/// the head checks) and answers it through the routes, without a socket: the way in for the fuzz target.
/// A request cut short is answered 408. Never throws. (Defined with the transport, server.cc.)
HttpReply answer_bytes(std::string_view raw, ServeState& state);
/// A JSON error reply for a transport-level failure (body too large, header too large, too many connections).
HttpReply error_reply(int status, const std::string& id, const std::string& reason, const std::string& message);

}  // namespace mlops::detail
