#include "serve/metrics.hpp"

#include <cstdio>
#include <map>
#include <mutex>

namespace mlops::detail {

namespace {

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// Prometheus label values escape backslash, double quote and newline.
std::string label_value(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

void Histogram::observe(double seconds) noexcept {
  std::size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<std::uint64_t>(seconds * 1e9), std::memory_order_relaxed);
}

void Histogram::write(std::string& out, const std::string& name, const std::string& labels) const {
  const std::string sep = labels.empty() ? "" : ",";
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i <= kBounds.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    const std::string le = i < kBounds.size() ? num(kBounds[i]) : "+Inf";
    out += name + "_bucket{" + labels + sep + "le=\"" + le + "\"} " + std::to_string(cumulative) + "\n";
  }
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  out += name + "_sum" + braces + " " + num(static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9) + "\n";
  out += name + "_count" + braces + " " + std::to_string(count_.load(std::memory_order_relaxed)) + "\n";
}

const char* route_name(Route r) noexcept {
  switch (r) {
    case Route::Invocations: return "invocations";
    case Route::Batch: return "batch";
    case Route::Ping: return "ping";
    case Route::Health: return "health";
    case Route::Version: return "version";
    case Route::Models: return "models";
    case Route::Metrics: return "metrics";
    case Route::Admin: return "admin";
    default: return "other";
  }
}

void Metrics::request(Route route, int status, double seconds) noexcept {
  const auto r = static_cast<std::size_t>(route);
  if (status < 0 || status >= kStatuses) status = 0;
  by_status_[r][static_cast<std::size_t>(status)].fetch_add(1, std::memory_order_relaxed);
  latency_[r].observe(seconds);
}

void Metrics::model(const std::string& name, bool error, std::size_t rows, double seconds) {
  ModelStats* s = nullptr;
  {
    std::shared_lock lock(models_mu_);
    if (auto it = models_.find(name); it != models_.end()) s = it->second.get();
  }
  if (!s) {
    std::unique_lock lock(models_mu_);
    auto& slot = models_[name];
    if (!slot) slot = std::make_unique<ModelStats>();
    s = slot.get();
  }
  s->requests.fetch_add(1, std::memory_order_relaxed);
  if (error) s->errors.fetch_add(1, std::memory_order_relaxed);
  s->rows.fetch_add(rows, std::memory_order_relaxed);
  s->latency.observe(seconds);
}

std::string Metrics::text(const std::string& release_md5, const std::string& image, std::size_t models,
                          std::size_t connections) const {
  std::string out;
  out += "# HELP mlops_release_info The release being served.\n# TYPE mlops_release_info gauge\n";
  out += "mlops_release_info{release=\"" + label_value(release_md5) + "\",image=\"" + label_value(image) + "\"} 1\n";
  out += "# HELP mlops_models Models in the release being served.\n# TYPE mlops_models gauge\n";
  out += "mlops_models " + std::to_string(models) + "\n";
  out += "# HELP mlops_connections Open client connections.\n# TYPE mlops_connections gauge\n";
  out += "mlops_connections " + std::to_string(connections) + "\n";
  out += "# HELP mlops_release_switches_total Release switches, by result.\n# TYPE mlops_release_switches_total counter\n";
  out += "mlops_release_switches_total{result=\"ok\"} " + std::to_string(switches_.load()) + "\n";
  out += "mlops_release_switches_total{result=\"failed\"} " + std::to_string(switch_failures_.load()) + "\n";

  out += "# HELP mlops_http_requests_total HTTP requests answered, by route and status.\n"
         "# TYPE mlops_http_requests_total counter\n";
  for (int r = 0; r < static_cast<int>(Route::Count); ++r)
    for (int s = 0; s < kStatuses; ++s)
      if (auto v = by_status_[static_cast<std::size_t>(r)][static_cast<std::size_t>(s)].load(std::memory_order_relaxed))
        out += std::string("mlops_http_requests_total{route=\"") + route_name(static_cast<Route>(r)) + "\",code=\"" +
               std::to_string(s) + "\"} " + std::to_string(v) + "\n";
  out += "# HELP mlops_http_request_duration_seconds Time to answer a request, by route.\n"
         "# TYPE mlops_http_request_duration_seconds histogram\n";
  for (int r = 0; r < static_cast<int>(Route::Count); ++r)
    latency_[static_cast<std::size_t>(r)].write(out, "mlops_http_request_duration_seconds",
                                                std::string("route=\"") + route_name(static_cast<Route>(r)) + "\"");

  std::map<std::string, const ModelStats*> sorted;
  {
    std::shared_lock lock(models_mu_);
    for (const auto& [name, s] : models_) sorted.emplace(name, s.get());
  }
  out += "# HELP mlops_model_requests_total Invocations of a model.\n# TYPE mlops_model_requests_total counter\n";
  for (const auto& [name, s] : sorted)
    out += "mlops_model_requests_total{model=\"" + label_value(name) + "\"} " + std::to_string(s->requests.load()) + "\n";
  out += "# HELP mlops_model_errors_total Invocations of a model that failed.\n# TYPE mlops_model_errors_total counter\n";
  for (const auto& [name, s] : sorted)
    out += "mlops_model_errors_total{model=\"" + label_value(name) + "\"} " + std::to_string(s->errors.load()) + "\n";
  out += "# HELP mlops_model_predictions_total Rows predicted by a model.\n# TYPE mlops_model_predictions_total counter\n";
  for (const auto& [name, s] : sorted)
    out += "mlops_model_predictions_total{model=\"" + label_value(name) + "\"} " + std::to_string(s->rows.load()) + "\n";
  out += "# HELP mlops_model_latency_seconds Time a model took to read and predict its rows.\n"
         "# TYPE mlops_model_latency_seconds histogram\n";
  for (const auto& [name, s] : sorted) s->latency.write(out, "mlops_model_latency_seconds", "model=\"" + label_value(name) + "\"");
  return out;
}

}  // namespace mlops::detail
