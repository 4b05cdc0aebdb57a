#include "serve/metrics.hpp"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <vector>

#include "mlops/serve.hpp"

namespace mlops::detail {

namespace {

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// The standard process_* metrics of Prometheus client libraries, from /proc (Linux; absent elsewhere).
std::string process_text() {
  std::string out;
  std::ifstream stat("/proc/self/stat");
  std::string line;
  if (!std::getline(stat, line)) return out;
  // Fields after the command name (which may hold spaces) start at field 3 (state).
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  std::vector<std::string> f{"", "", ""};
  for (std::string v; rest >> v;) f.push_back(v);
  if (f.size() < 25) return out;
  const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
  const double cpu = (std::stod(f[14]) + std::stod(f[15])) / tick;
  std::size_t fds = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec); !ec && it != std::filesystem::directory_iterator();
       it.increment(ec))
    ++fds;
  out += "# HELP process_cpu_seconds_total User and system CPU time spent in seconds.\n# TYPE process_cpu_seconds_total counter\n";
  out += "process_cpu_seconds_total " + num(cpu) + "\n";
  out += "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\n";
  out += "process_resident_memory_bytes " + num(std::stod(f[24]) * page) + "\n";
  out += "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n# TYPE process_virtual_memory_bytes gauge\n";
  out += "process_virtual_memory_bytes " + f[23] + "\n";
  out += "# HELP process_threads Number of OS threads in the process.\n# TYPE process_threads gauge\n";
  out += "process_threads " + f[20] + "\n";
  out += "# HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge\n";
  out += "process_open_fds " + std::to_string(fds) + "\n";
  return out;
}

}  // namespace

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
    case Route::Shadow: return "shadow";
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

const char* refusal_name(Refusal r) noexcept {
  switch (r) {
    case Refusal::BodyTooLarge: return "body_too_large";
    case Refusal::HeaderTooLarge: return "header_too_large";
    case Refusal::MalformedHttp: return "malformed_http";
    case Refusal::TooManyConnections: return "too_many_connections";
    case Refusal::Busy: return "busy";
    case Refusal::RequestTimeout: return "request_timeout";
    case Refusal::IdleTimeout: return "idle_timeout";
    case Refusal::WriteTimeout: return "write_timeout";
    case Refusal::Shed: return "shed";
    default: return "other";
  }
}

void Metrics::model(const std::string& name, std::int64_t version, bool error, std::size_t rows, double seconds) {
  std::shared_ptr<ModelStats> s;
  {
    std::shared_lock lock(models_mu_);
    if (auto it = models_.find(name); it != models_.end() && it->second->version == version) s = it->second;
  }
  if (!s) {
    std::unique_lock lock(models_mu_);
    auto& slot = models_[name];
    if (!slot || slot->version != version) {
      slot = std::make_shared<ModelStats>();  // a new version starts its own series
      slot->version = version;
    }
    s = slot;
  }
  s->requests.fetch_add(1, std::memory_order_relaxed);
  if (error) s->errors.fetch_add(1, std::memory_order_relaxed);
  s->rows.fetch_add(rows, std::memory_order_relaxed);
  s->latency.observe(seconds);
}

void Metrics::keep_models(const Release& current) {
  std::unique_lock lock(models_mu_);
  for (auto it = models_.begin(); it != models_.end();) {
    const auto* m = current.find(it->first);
    if (m && m->version == it->second->version) ++it;
    else it = models_.erase(it);
  }
}

std::string Metrics::text(const std::string& release_md5, const std::string& image, const Gauges& g) const {
  std::string out;
  out += "# HELP mlops_release_info The release being served.\n# TYPE mlops_release_info gauge\n";
  out += "mlops_release_info{release=\"" + label_value(release_md5) + "\",image=\"" + label_value(image) + "\"} 1\n";
  out += "# HELP mlops_models Models in the release being served.\n# TYPE mlops_models gauge\n";
  out += "mlops_models " + std::to_string(g.models) + "\n";
  out += "# HELP mlops_connections Open client connections.\n# TYPE mlops_connections gauge\n";
  out += "mlops_connections " + std::to_string(g.connections) + "\n";
  out += "# HELP mlops_connections_idle Open connections waiting for a request to begin.\n"
         "# TYPE mlops_connections_idle gauge\n";
  out += "mlops_connections_idle " + std::to_string(g.idle_connections) + "\n";
  out += "# HELP mlops_http_buffered_bytes Request body bytes reserved by all connections.\n"
         "# TYPE mlops_http_buffered_bytes gauge\n";
  out += "mlops_http_buffered_bytes " + std::to_string(g.buffered_bytes) + "\n";
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

  out += "# HELP mlops_http_refused_total Requests and connections the transport refused or cut off, by reason.\n"
         "# TYPE mlops_http_refused_total counter\n";
  for (std::size_t r = 0; r < refusals_.size(); ++r)
    out += std::string("mlops_http_refused_total{reason=\"") + refusal_name(static_cast<Refusal>(r)) + "\"} " +
           std::to_string(refusals_[r].load(std::memory_order_relaxed)) + "\n";

  std::map<std::string, std::shared_ptr<const ModelStats>> sorted;
  {
    std::shared_lock lock(models_mu_);
    for (const auto& [name, s] : models_) sorted.emplace(name, s);
  }
  auto labels = [](const std::string& name, const ModelStats& s) {
    return "model=\"" + label_value(name) + "\",version=\"" + std::to_string(s.version) + "\"";
  };
  out += "# HELP mlops_model_requests_total Invocations of a model.\n# TYPE mlops_model_requests_total counter\n";
  for (const auto& [name, s] : sorted)
    out += "mlops_model_requests_total{" + labels(name, *s) + "} " + std::to_string(s->requests.load()) + "\n";
  out += "# HELP mlops_model_errors_total Invocations of a model that failed.\n# TYPE mlops_model_errors_total counter\n";
  for (const auto& [name, s] : sorted)
    out += "mlops_model_errors_total{" + labels(name, *s) + "} " + std::to_string(s->errors.load()) + "\n";
  out += "# HELP mlops_model_predictions_total Rows predicted by a model.\n# TYPE mlops_model_predictions_total counter\n";
  for (const auto& [name, s] : sorted)
    out += "mlops_model_predictions_total{" + labels(name, *s) + "} " + std::to_string(s->rows.load()) + "\n";
  out += "# HELP mlops_model_latency_seconds Time a model took to read and predict its rows.\n"
         "# TYPE mlops_model_latency_seconds histogram\n";
  for (const auto& [name, s] : sorted) s->latency.write(out, "mlops_model_latency_seconds", labels(name, *s));
  out += process_text();
  return out;
}

}  // namespace mlops::detail
