// Counters and latency histograms of the server, written as Prometheus text (internal).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace mlops {
class Release;
}

namespace mlops::detail {

/// A Prometheus label value: backslash, double quote and newline escaped.
std::string label_value(std::string_view v);

/// A latency histogram with fixed bounds (seconds). Lock-free.
class Histogram {
 public:
  static constexpr std::array<double, 12> kBounds{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                  0.05,   0.1,   0.25,   0.5,   1.0,  2.5};
  void observe(double seconds) noexcept;
  /// Appends name_bucket{labels,le=...}, name_sum and name_count lines.
  void write(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::array<std::atomic<std::uint64_t>, kBounds.size() + 1> buckets_{};
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_ns_{0};
};

/// The routes metrics are kept for.
enum class Route : int { Invocations, Batch, Ping, Health, Version, Models, Metrics, Shadow, Admin, Other, Count };
const char* route_name(Route r) noexcept;

/// Requests the transport refuses or cuts off before a route answers them.
enum class Refusal : int {
  BodyTooLarge,       ///< 413
  HeaderTooLarge,     ///< 431
  MalformedHttp,      ///< 400 (bad framing, a syntax error)
  TooManyConnections, ///< 503
  Busy,               ///< 503: the global bound on buffered request bytes, or the switch queue, is full
  RequestTimeout,     ///< 408: a started request did not arrive whole in time
  IdleTimeout,        ///< closed: no request began in time (a new or a keep-alive connection)
  WriteTimeout,       ///< closed: the client did not read the answer in time
  Shed,               ///< closed: an idle connection made room for a new one at the connection limit
  Count
};
const char* refusal_name(Refusal r) noexcept;

/// The gauges /metrics reports beside the counters.
struct Gauges {
  std::size_t models = 0;            ///< models in the release being served
  std::size_t connections = 0;       ///< open client connections
  std::size_t idle_connections = 0;  ///< of which waiting for a request to begin
  std::size_t buffered_bytes = 0;    ///< request body bytes reserved by all connections
};

class Metrics {
 public:
  /// One answered request; `seconds` from its first byte to the last byte of the answer.
  void request(Route route, int status, double seconds) noexcept;
  /// One refusal or cut-off by the transport.
  void refused(Refusal r) noexcept { refusals_[static_cast<std::size_t>(r)].fetch_add(1, std::memory_order_relaxed); }
  /// One model's part of an invocation: its rows, whether it failed, and the time it took.
  void model(const std::string& name, std::int64_t version, bool error, std::size_t rows, double seconds);
  /// Drops the series of models (name and version) that `current` does not serve.
  void keep_models(const Release& current);
  void release_switch(bool ok) noexcept { (ok ? switches_ : switch_failures_).fetch_add(1, std::memory_order_relaxed); }
  /// The Prometheus text exposition (version 0.0.4).
  [[nodiscard]] std::string text(const std::string& release_md5, const std::string& image, const Gauges& gauges) const;

 private:
  struct ModelStats {
    std::int64_t version = 0;
    std::atomic<std::uint64_t> requests{0}, errors{0}, rows{0};
    Histogram latency;
  };
  static constexpr int kStatuses = 600;
  std::array<std::array<std::atomic<std::uint64_t>, kStatuses>, static_cast<int>(Route::Count)> by_status_{};
  std::array<Histogram, static_cast<int>(Route::Count)> latency_{};
  std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(Refusal::Count)> refusals_{};
  std::atomic<std::uint64_t> switches_{0}, switch_failures_{0};
  mutable std::shared_mutex models_mu_;
  // By model name; a series lives as long as a reader holds it, so dropping one never races an update.
  std::unordered_map<std::string, std::shared_ptr<ModelStats>> models_;
};

}  // namespace mlops::detail
