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

namespace mlops::detail {

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
enum class Route : int { Invocations, Batch, Ping, Health, Version, Models, Metrics, Admin, Other, Count };
const char* route_name(Route r) noexcept;

class Metrics {
 public:
  /// One answered request.
  void request(Route route, int status, double seconds) noexcept;
  /// One model's part of an invocation: its rows, whether it failed, and the time it took.
  void model(const std::string& name, bool error, std::size_t rows, double seconds);
  void release_switch(bool ok) noexcept { (ok ? switches_ : switch_failures_).fetch_add(1, std::memory_order_relaxed); }
  /// The Prometheus text exposition (version 0.0.4).
  [[nodiscard]] std::string text(const std::string& release_md5, const std::string& image, std::size_t models,
                                 std::size_t connections) const;

 private:
  struct ModelStats {
    std::atomic<std::uint64_t> requests{0}, errors{0}, rows{0};
    Histogram latency;
  };
  static constexpr int kStatuses = 600;
  std::array<std::array<std::atomic<std::uint64_t>, kStatuses>, static_cast<int>(Route::Count)> by_status_{};
  std::array<Histogram, static_cast<int>(Route::Count)> latency_{};
  std::atomic<std::uint64_t> switches_{0}, switch_failures_{0};
  mutable std::shared_mutex models_mu_;
  std::unordered_map<std::string, std::unique_ptr<ModelStats>> models_;
};

}  // namespace mlops::detail
