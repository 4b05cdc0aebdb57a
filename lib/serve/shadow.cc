#include "serve/shadow.hpp"

#include "serve/metrics.hpp"

namespace mlops::detail {

Shadow::Shadow(std::size_t queue_capacity) : capacity_(queue_capacity) {}

Shadow::~Shadow() { stop(); }

void Shadow::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    queue_.clear();
  }
  ready_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<const Release> Shadow::release() const {
  std::lock_guard lock(mu_);
  return shadow_;
}

void Shadow::set(std::shared_ptr<const Release> shadow, const Release& primary) {
  std::lock_guard lock(mu_);
  shadow_ = std::move(shadow);
  pair_models(primary);
  if (shadow_ && !thread_.joinable() && !stopping_) thread_ = std::thread([this] { loop(); });  // the first shadow
}

void Shadow::primary_switched(const Release& primary) {
  std::lock_guard lock(mu_);
  pair_models(primary);
}

// A pair whose versions stay keeps its counts; a changed or dropped pair loses them.
void Shadow::pair_models(const Release& primary) {
  std::map<std::string, Pair> next;
  if (shadow_)
    for (const auto& m : primary.models()) {
      const ServedModel* s = shadow_->find(m.name);
      if (!s || s->version == m.version) continue;
      Pair p;
      if (auto it = pairs_.find(m.name); it != pairs_.end() && it->second.version == m.version &&
                                         it->second.shadow_version == s->version)
        p = it->second;
      p.version = m.version;
      p.shadow_version = s->version;
      p.shadow_model = s;
      next.emplace(m.name, p);
    }
  pairs_ = std::move(next);
  active_.store(!pairs_.empty(), std::memory_order_release);
}

void Shadow::offer(const ServedModel& served, ScoringRows& rows, const nlohmann::json& labels) noexcept {
  if (!active_.load(std::memory_order_acquire)) return;
  try {
    {
      std::lock_guard lock(mu_);
      auto it = pairs_.find(served.name);
      if (it == pairs_.end() || it->second.version != served.version || stopping_) return;
      if (queue_.size() >= capacity_) {
        ++dropped_;
        return;
      }
      queue_.push_back(Job{shadow_, it->second.shadow_model, served.name, served.version, std::move(rows), labels});
    }
    ready_.notify_one();
  } catch (...) {
    std::lock_guard lock(mu_);
    ++dropped_;  // out of memory for the copy: the served answer is unaffected
  }
}

void Shadow::loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    Job job = std::move(queue_.front());
    queue_.pop_front();
    ++in_flight_;
    lock.unlock();
    score(job);
    lock.lock();
    --in_flight_;
  }
}

void Shadow::score(Job& job) {
  nlohmann::json shadow_labels;
  bool failed = false;
  try {
    shadow_labels = predict_labels(job.shadow_model->adapter, job.rows);
  } catch (...) {
    failed = true;
  }
  std::lock_guard lock(mu_);
  if (failed || !shadow_labels.is_array() || shadow_labels.size() != job.labels.size()) {
    ++errors_;
    return;
  }
  // Counted only while the pair it was scored for is still the one served and shadowed.
  auto it = pairs_.find(job.name);
  if (it == pairs_.end() || it->second.version != job.version || it->second.shadow_model != job.shadow_model) return;
  auto& p = it->second;
  ++p.requests;
  p.rows += job.labels.size();
  for (std::size_t i = 0; i < job.labels.size(); ++i) ++(shadow_labels[i] == job.labels[i] ? p.agree : p.disagree);
}

nlohmann::json Shadow::summary() const {
  std::lock_guard lock(mu_);
  nlohmann::json models = nlohmann::json::array();
  for (const auto& [name, p] : pairs_) {
    const auto scored = p.agree + p.disagree;
    models.push_back({{"model", name},
                      {"version", p.version},
                      {"shadow_version", p.shadow_version},
                      {"requests", p.requests},
                      {"rows", p.rows},
                      {"agree", p.agree},
                      {"disagree", p.disagree},
                      {"agreement", scored ? nlohmann::json(static_cast<double>(p.agree) / static_cast<double>(scored))
                                           : nlohmann::json(nullptr)}});
  }
  return {{"shadow", shadow_ ? nlohmann::json(shadow_->md5()) : nlohmann::json(nullptr)},
          {"queued", queue_.size() + in_flight_},
          {"dropped", dropped_},
          {"errors", errors_},
          {"models", std::move(models)}};
}

void Shadow::write_metrics(std::string& out) const {
  std::lock_guard lock(mu_);
  out += "# HELP mlops_shadow_release_info The shadow release, scored off the response path.\n"
         "# TYPE mlops_shadow_release_info gauge\n";
  if (shadow_) out += "mlops_shadow_release_info{release=\"" + label_value(shadow_->md5()) + "\"} 1\n";
  out += "# HELP mlops_shadow_rows_total Rows the shadow model scored, by whether its label agreed with the answer.\n"
         "# TYPE mlops_shadow_rows_total counter\n";
  for (const auto& [name, p] : pairs_) {
    const std::string labels = "model=\"" + label_value(name) + "\",version=\"" + std::to_string(p.version) +
                               "\",shadow_version=\"" + std::to_string(p.shadow_version) + "\"";
    out += "mlops_shadow_rows_total{" + labels + ",outcome=\"agree\"} " + std::to_string(p.agree) + "\n";
    out += "mlops_shadow_rows_total{" + labels + ",outcome=\"disagree\"} " + std::to_string(p.disagree) + "\n";
  }
  out += "# HELP mlops_shadow_dropped_total Requests not shadowed because the shadow queue was full.\n"
         "# TYPE mlops_shadow_dropped_total counter\n";
  out += "mlops_shadow_dropped_total " + std::to_string(dropped_) + "\n";
  out += "# HELP mlops_shadow_errors_total Shadow predictions that failed.\n# TYPE mlops_shadow_errors_total counter\n";
  out += "mlops_shadow_errors_total " + std::to_string(errors_) + "\n";
  out += "# HELP mlops_shadow_queued Requests waiting for the shadow model or being scored by it.\n"
         "# TYPE mlops_shadow_queued gauge\n";
  out += "mlops_shadow_queued " + std::to_string(queue_.size() + in_flight_) + "\n";
}

}  // namespace mlops::detail
