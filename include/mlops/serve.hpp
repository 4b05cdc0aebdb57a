/// @file serve.hpp
/// Serving a release: every adapter of a release in one process, text in, labels out, over HTTP/1.1.
///
/// A Release is loaded from a build-context folder (`manifest.json` + `models/<name>/`, as
/// Pipeline::write_build_context writes it). The Server answers MLflow's scoring protocol per model and a
/// batch route for many models at once; it swaps to another release atomically without dropping a request
/// (the new release is loaded beside the old one; requests in flight finish on the one they started with).
///
/// Routes:
///   POST /models/{name}/invocations   MLflow scoring body (dataframe_split | dataframe_records | instances |
///                                     inputs) -> {"predictions": [...]}, labels typed like the training labels
///   POST /invocations/batch           {"requests": [{"model": name, <scoring body>}, ...]} ->
///                                     {"responses": [{"model": name, "predictions": [...]}, ...]}
///   GET  /ping, /health               liveness; /health also reports the release and model count
///   GET  /version                     {"release": md5, "image": tag, "models": n, "mlops": version}
///   GET  /models                      each model's version and lineage (data commit, code commit, run)
///   GET  /metrics                     Prometheus text: requests, errors, latency histograms, per model
///   POST /admin/release               {"release": DIR | MD5 | alias}: switch (rollback is the same), with
///                                     `Authorization: Bearer <token>`; refused when no token is configured
///   POST /invocations                 MLflow's own route, when the release has exactly one model
///   GET  /shadow                      the shadow release and, per shadowed model, rows whose labels agreed and
///                                     disagreed with the answers: {"release", "shadow", "queued", "dropped",
///                                     "errors", "models": [{model, version, shadow_version, requests, rows, agree,
///                                     disagree, agreement}]}
///   POST /admin/shadow                {"release": DIR | MD5 | alias | null}: set or clear the shadow release
///                                     (same token as /admin/release)
/// Shadow traffic: with a shadow release set, a request to a model that the shadow release holds in another
/// version is also scored by that version on one background thread, after the answer is made; the answer and
/// its latency do not depend on it (a full shadow queue skips the request, counted as dropped).
/// Scoring bodies are application/json or text/csv (a header row naming the columns). A batch answers each
/// request on its own: predictions, or that request's error.
/// Errors are JSON as MLflow's scoring server writes them, with the mlops details beside:
/// {"error_code": "BAD_REQUEST" | "RESOURCE_DOES_NOT_EXIST" | "INTERNAL_ERROR" | "TEMPORARILY_UNAVAILABLE",
///  "message": "[<mlops error id>] ...", "reason": "<stable reason>", "error_id": "<mlops error id>"}
/// with a 4xx status (5xx only for a failure of the server itself, or 503 when it is busy).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlops/adapter.hpp"

namespace mlops {

/// One model of a release.
struct ServedModel {
  std::string name;
  std::int64_t version = 0;
  Adapter adapter;
  nlohmann::json lineage = nlohmann::json::object();  ///< data_commit, code_commit, run_id, ... (may be empty)
};

/// Every adapter of one release, loaded and immutable. Shared by the requests that use it.
class Release {
 public:
  /// Loads a build-context folder: verifies manifest.json (its MD5 is the release id), loads every model
  /// listed in it from models/<name>/ (the MLflow model directory; the weights file's SHA-256 must be the
  /// one MLmodel records as weights_sha256, where it records one, as every logged model does), reads
  /// lineage.json when present. Uses `threads` threads (0 = hardware concurrency).
  /// @throws NotFoundError if the folder, manifest or a model is missing; IntegrityError if a file is corrupted,
  ///         or a weights file is not the one its MLmodel records
  [[nodiscard]] static std::shared_ptr<const Release> load(const std::filesystem::path& dir, unsigned threads = 0);

  [[nodiscard]] const std::string& md5() const noexcept { return md5_; }
  /// The image tag (`repository:md5`), when the folder records it (release.json or the Dockerfile); else "".
  [[nodiscard]] const std::string& image() const noexcept { return image_; }
  [[nodiscard]] const std::filesystem::path& directory() const noexcept { return dir_; }
  /// Models sorted by name.
  [[nodiscard]] const std::vector<ServedModel>& models() const noexcept { return models_; }
  /// The model named `name`, or nullptr.
  [[nodiscard]] const ServedModel* find(std::string_view name) const noexcept;
  /// Seconds load() took.
  [[nodiscard]] double load_seconds() const noexcept { return load_seconds_; }

 private:
  std::string md5_, image_;
  std::filesystem::path dir_;
  std::vector<ServedModel> models_;
  double load_seconds_ = 0;
};

/// Settings of a Server. Limits protect the server from clients: a request over a limit gets a 4xx.
struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;                 ///< 0 picks a free port (see Server::port())
  unsigned threads = 0;                      ///< I/O threads (0 = hardware concurrency)
  unsigned workers = 0;                      ///< scoring threads, apart from the I/O ones (0 = hardware concurrency)
  std::size_t max_body_bytes = 8u << 20;     ///< larger bodies get 413 (before they are read)
  std::size_t max_header_bytes = 16u << 10;  ///< larger request heads get 431
  /// Request bodies buffered by all connections together; a request that would pass it gets 503.
  std::size_t max_buffered_bytes = 256u << 20;
  /// Open connections. At the limit the longest-idle connection is closed to make room; with none idle,
  /// a few connections more may still ask /ping, /health and /metrics; anything else gets 503 and is closed.
  std::size_t max_connections = 1024;
  std::size_t max_rows = 10000;              ///< rows per request (all models of a batch together): 400
  /// A new connection must send its request head within this; a request head, once begun, too (else 408).
  std::chrono::milliseconds header_timeout{5000};
  std::chrono::milliseconds read_timeout{10000};  ///< a request's body must arrive whole within this (else 408);
                                                  ///< an answer must be read within it too
  std::chrono::milliseconds idle_timeout{60000};  ///< a keep-alive connection idle this long between requests is closed
  std::chrono::milliseconds drain_timeout{10000}; ///< stop() waits this long for requests in flight
  std::string admin_token;                   ///< bearer token of the /admin routes; empty refuses them
  std::string image;                         ///< overrides the release's image tag in /version
  /// A second release (a name as for the served one: folder, MD5, alias) whose models score the same rows
  /// off the response path, where they are other versions of served models (see GET /shadow). Empty: none.
  std::string shadow;
  std::size_t shadow_queue = 4096;           ///< requests waiting for the shadow models; more are not shadowed
};

/// Maps a release name given to switch_to()/the admin route (a folder, an MD5, an alias) to a folder to
/// load. The default treats the name as a folder.
using ReleaseResolver = std::function<std::filesystem::path(const std::string& release)>;

/// The HTTP server. Construct, then start() (background threads) or run() (blocks; handles signals).
class Server {
 public:
  /// Loads the release named `release` (through `resolver`), and options.shadow if set, and binds the
  /// listening socket. @throws ConfigError if the address cannot be bound; the errors of Release::load
  Server(const std::string& release, ServerOptions options = {}, ReleaseResolver resolver = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// The bound port (the chosen one when options.port was 0).
  [[nodiscard]] std::uint16_t port() const noexcept;
  [[nodiscard]] std::shared_ptr<const Release> release() const;

  /// Serves on options.threads background threads; returns at once.
  void start();
  /// Serves on this thread and options.threads-1 more until stop() or a signal: SIGHUP reloads the
  /// release it was started with (a folder re-read, an alias re-resolved) on the one release-loading
  /// thread (signals that arrive while a reload waits make one reload); SIGTERM and SIGINT drain
  /// (stop accepting, finish requests in flight, close idle connections) and return.
  void run();
  /// Drains and stops; returns once every thread has finished. Safe from any thread, idempotent.
  void stop();

  /// Loads `release` beside the current one and swaps atomically; requests in flight finish on the old one.
  /// Switches are serialised. @returns the new release @throws as Release::load (the old one stays)
  std::shared_ptr<const Release> switch_to(const std::string& release);
  /// Reloads the release the server was started with, and its shadow release if one was named (what SIGHUP does).
  std::shared_ptr<const Release> reload();
  /// Loads `release` as the shadow release and swaps it in atomically; "" clears it.
  /// @returns the new shadow release (nullptr when cleared) @throws as Release::load (the old one stays)
  std::shared_ptr<const Release> switch_shadow(const std::string& release);
  /// The shadow release, or nullptr.
  [[nodiscard]] std::shared_ptr<const Release> shadow() const;

  /// The Prometheus text of /metrics.
  [[nodiscard]] std::string metrics_text() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace mlops
