// A pooled, retrying HTTP client on libcurl (internal). Used by the MLflow tracker.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "http/http.hpp"

namespace mlops::detail {

struct HttpResponse;

/// When and how often a request is tried again (the same knobs as MLflow's own client).
struct RetryPolicy {
  int max_retries = 7;          ///< attempts after the first
  double backoff_factor = 2.0;  ///< wait before retry n (1-based): factor * 2^(n-1) seconds
  double backoff_jitter = 1.0;  ///< plus a uniform random 0..jitter seconds
  double max_retry_after = 120;  ///< a server's Retry-After is honoured up to this many seconds
  /// While the server has never answered this client (a wrong address, a server not started), a request
  /// stops retrying before this many seconds have passed since its first attempt; 0: no limit. Once the
  /// server answered, a restart mid-job gets every one of `max_retries`.
  double first_contact_seconds = 0;
  /// Called before each retry with the failed attempt, the retry's number (1-based) and the wait in seconds.
  std::function<void(const HttpResponse&, int, double)> on_retry;

  /// Seconds to wait before retry `n` (1-based) when the server gave no Retry-After.
  [[nodiscard]] double backoff(int n) const;
};

/// Credentials: basic (username/password) wins over a bearer token, as in MLflow's client.
struct HttpAuth {
  std::string username;
  std::string password;
  std::string token;
};

struct HttpRequest {
  std::string method = "GET";   ///< GET, POST, PUT, PATCH, DELETE
  std::string url;              ///< full URL (may carry a query string)
  std::string body;             ///< request body for POST/PATCH/DELETE (JSON)
  std::filesystem::path upload_file;    ///< non-empty: PUT streams this file as the body
  std::filesystem::path download_file;  ///< non-empty: a 2xx body is streamed into this file (atomically)
};

struct HttpResponse {
  long status = 0;            ///< HTTP status; 0 when no answer came
  std::string body;           ///< the body (empty when streamed into a file)
  double retry_after = -1;    ///< Retry-After in seconds, -1 when absent
  std::string transport_error;  ///< libcurl's reason when no answer came
  int attempts = 0;           ///< how many times the request was sent
  double waited_seconds = 0;  ///< the waits before its retries, in seconds (Retry-After or the backoff)

  /// True for a connection failure or a status MLflow's client retries (408, 429, 500, 502, 503, 504).
  [[nodiscard]] bool retryable() const;
};

/// HTTP with kept-alive connections: a pool of libcurl handles, each reused (and its connections with
/// it) by one request at a time. Thread-safe.
class HttpClient {
 public:
  HttpClient(TlsOptions tls, HttpAuth auth, long timeout_seconds, RetryPolicy retry);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  /// One attempt; never throws for HTTP or connection failures (see HttpResponse).
  HttpResponse perform(const HttpRequest& request);

  /// Until the server first answers, a connection attempt gives up after this many seconds (or the request
  /// timeout when shorter), so a wrong address shows within moments; afterwards after 30 s.
  static constexpr long kFirstConnectSeconds = 2;

  /// Attempts until an answer that is not retryable, or the retries are spent. `before_retry`, when
  /// given, runs before each retry and may return a response to finish with instead (used to find out
  /// whether a failed create did happen after all).
  HttpResponse send(const HttpRequest& request,
                    const std::function<std::optional<HttpResponse>()>& before_retry = {});

  /// As `send`, with another number of retries (0: one attempt).
  HttpResponse send_with_retries(const HttpRequest& request, int max_retries);

  [[nodiscard]] const RetryPolicy& retry_policy() const noexcept { return retry_; }

 private:
  HttpResponse send_loop(const HttpRequest& request, int max_retries,
                         const std::function<std::optional<HttpResponse>()>& before_retry);
  struct Pool;
  TlsOptions tls_;
  HttpAuth auth_;
  long timeout_seconds_;
  RetryPolicy retry_;
  std::atomic<bool> reached_{false};  ///< the server has answered at least once
  std::unique_ptr<Pool> pool_;
};

/// Percent-encodes one URL component (path segment or query value).
std::string url_escape(std::string_view text);

}  // namespace mlops::detail
