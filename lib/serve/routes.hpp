// The server's routes without the HTTP transport: a request's method, target, headers and body in, a
// status and body out (internal). The transport (server.cc) only moves bytes.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "mlops/serve.hpp"
#include "serve/metrics.hpp"

namespace mlops::detail {

/// What every connection shares: the settings, the current release and the metrics.
struct ServeState {
  ServerOptions options;
  ReleaseResolver resolver;
  std::string initial;  ///< the release name the server started with (what SIGHUP reloads)
  Metrics metrics;
  std::atomic<std::size_t> connections{0};

  /// The current release (a counted reference: requests keep theirs alive across a switch).
  [[nodiscard]] std::shared_ptr<const Release> release() const;
  /// Loads `name` beside the current release and swaps; serialised. The old one stays on failure.
  std::shared_ptr<const Release> switch_to(const std::string& name);

  mutable std::mutex release_mu;
  std::shared_ptr<const Release> current;
  std::mutex switch_mu;
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
};

/// True for the admin route, which blocks while a release loads: the transport runs it off its threads.
bool is_admin_call(const HttpCall& call);
/// Answers one request (every route; the admin route blocks). Never throws: errors become JSON replies.
HttpReply handle_call(const HttpCall& call, ServeState& state);
/// A JSON error reply for a transport-level failure (body too large, header too large, too many connections).
HttpReply error_reply(int status, const std::string& id, const std::string& reason, const std::string& message);

}  // namespace mlops::detail
