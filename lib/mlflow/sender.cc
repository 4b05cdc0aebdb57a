// Asynchronous, loss-free delivery of params, metrics and tags: batches, retries and the spool file.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <regex>

#include "core/text.hpp"
#include "mlflow/internal.hpp"
#include "mlops/error.hpp"

namespace mlops {

namespace detail {

std::string random_hex_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* kHex = "0123456789abcdef";
  std::string out(32, '0');
  for (int half = 0; half < 2; ++half) {
    std::uint64_t bits = rng();
    for (int i = 0; i < 16; ++i) out[half * 16 + i] = kHex[(bits >> (4 * i)) & 15];
  }
  return out;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void validate_key(const std::string& key, const char* what) {
  static const std::regex kAllowed(R"(^[/\w.\- :]+$)");
  if (key.empty() || key.size() > 250 || !std::regex_match(key, kAllowed))
    throw DataError(std::string(what) + " key " + quote_for_message(key) +
                    " is not valid: MLflow keys have 1 to 250 characters from letters, digits, _ - . / space :");
}

namespace {

nlohmann::json metric_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  return v;
}

std::size_t entry_bytes(const LogEntry& e) { return e.key.size() + e.text.size() + 80; }

}  // namespace

nlohmann::json take_batch(const std::string& run_id, std::deque<LogEntry>& queue) {
  nlohmann::json metrics = nlohmann::json::array(), params = nlohmann::json::array(),
                 tags = nlohmann::json::array();
  std::size_t bytes = 64 + run_id.size();
  while (!queue.empty()) {
    const LogEntry& e = queue.front();
    const std::size_t total = metrics.size() + params.size() + tags.size();
    if (total >= kMaxBatchEntities) break;
    if (total > 0 && bytes + entry_bytes(e) > kMaxBatchBytes) break;
    if (e.kind == LogEntry::Kind::Metric) {
      if (metrics.size() >= kMaxBatchMetrics) break;
      metrics.push_back({{"key", e.key}, {"value", metric_value(e.value)}, {"timestamp", e.timestamp}, {"step", e.step}});
    } else if (e.kind == LogEntry::Kind::Param) {
      if (params.size() >= kMaxBatchParams) break;
      params.push_back({{"key", e.key}, {"value", e.text}});
    } else {
      if (tags.size() >= kMaxBatchTags) break;
      tags.push_back({{"key", e.key}, {"value", e.text}});
    }
    bytes += entry_bytes(e);
    queue.pop_front();
  }
  nlohmann::json body = {{"run_id", run_id}};
  if (!metrics.empty()) body["metrics"] = std::move(metrics);
  if (!params.empty()) body["params"] = std::move(params);
  if (!tags.empty()) body["tags"] = std::move(tags);
  return body;
}

}  // namespace detail

namespace {

std::size_t batch_size(const nlohmann::json& body) {
  std::size_t n = 0;
  for (const char* k : {"metrics", "params", "tags"})
    if (body.contains(k)) n += body[k].size();
  return n;
}

}  // namespace

Sender::Sender(std::shared_ptr<MlflowTracker::Impl> tracker, std::string run_id)
    : tracker_(std::move(tracker)), run_id_(std::move(run_id)) {
  spool_path_ = tracker_->spool_dir / (run_id_ + ".jsonl");
  thread_ = std::thread([this] { loop(); });
}

Sender::~Sender() { stop(); }

void Sender::push(std::vector<detail::LogEntry> entries) {
  std::unique_lock lock(mutex_);
  for (auto& e : entries) {
    // Bounded memory: wait for room unless the server is down (then the sender spools the queue).
    space_cv_.wait(lock, [&] { return queue_.size() < tracker_->options.queue_capacity || stopping_; });
    if (stopping_) throw InternalError("log call on a run whose sender has stopped");
    queue_.push_back(std::move(e));
  }
  work_cv_.notify_one();
}

std::size_t Sender::pending_locked() const { return queue_.size() + spooled_entries_ + (busy_ ? 1 : 0); }

void Sender::flush() {
  std::unique_lock lock(mutex_);
  work_cv_.notify_one();
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration<double>(tracker_->options.flush_timeout_seconds);
  const bool idle = idle_cv_.wait_until(lock, deadline, [&] {
    return (queue_.empty() && !busy_ && !spool_pending_) || error_ != nullptr;
  });
  if (error_) {
    auto e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
  if (!idle)
    throw TrackingError("run " + run_id_ + ": " + std::to_string(pending_locked()) +
                        " logged values not yet delivered to " + tracker_->shown + " after " +
                        std::to_string(tracker_->options.flush_timeout_seconds) +
                        " s; undelivered batches are kept in " + spool_path_.string() +
                        " and delivered by MlflowTracker::deliver_spooled()");
}

void Sender::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  work_cv_.notify_all();
  space_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Sender::append_to_spool(const std::vector<std::string>& lines) {
  std::error_code ec;
  std::filesystem::create_directories(spool_path_.parent_path(), ec);
  const int fd = ::open(spool_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) throw ConfigError("cannot open the spool file " + spool_path_.string());
  std::string data;
  for (const auto& l : lines) data += l + "\n";
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n <= 0) {
      ::close(fd);
      throw ConfigError("cannot write the spool file " + spool_path_.string());
    }
    done += static_cast<std::size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
}

void Sender::spool_queue_locked() {
  std::vector<std::string> lines;
  while (!queue_.empty()) {
    auto body = detail::take_batch(run_id_, queue_);
    spooled_entries_ += batch_size(body);
    lines.push_back(body.dump());
  }
  if (!lines.empty()) {
    append_to_spool(lines);
    spool_pending_ = true;
  }
  space_cv_.notify_all();
}

bool Sender::drain_spool() {
  std::ifstream in(spool_path_, std::ios::binary);
  if (!in) return true;
  in.seekg(static_cast<std::streamoff>(spool_offset_));
  std::string line;
  while (std::getline(in, line)) {
    const auto body = nlohmann::json::parse(line, nullptr, false);
    if (!body.is_discarded()) {
      // One attempt per pass: while the server is down the sender waits between passes instead.
      auto r = tracker_->send("POST", "mlflow/runs/log-batch", body, 0);
      if (r.retryable()) return false;
      std::lock_guard lock(mutex_);
      spooled_entries_ -= std::min(spooled_entries_, batch_size(body));
      if (r.status < 200 || r.status >= 300) {
        try {
          tracker_->raise(r, "log-batch for run " + run_id_);
        } catch (...) {
          if (!error_) error_ = std::current_exception();
        }
      }
    }
    spool_offset_ += line.size() + 1;
  }
  in.close();
  std::error_code ec;
  std::filesystem::remove(spool_path_, ec);
  spool_offset_ = 0;
  return true;
}

void Sender::loop() {
  std::unique_lock lock(mutex_);
  const auto& opts = tracker_->options;
  while (true) {
    if (outage_) {
      work_cv_.wait_for(lock, std::chrono::duration<double>(opts.outage_retry_seconds),
                        [&] { return stopping_ || queue_.size() >= opts.queue_capacity; });
    } else {
      work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty() || spool_pending_; });
    }
    try {
      if (stopping_) {
        // Whatever is left goes to the spool file, for deliver_spooled().
        spool_queue_locked();
        idle_cv_.notify_all();
        return;
      }
      if (outage_) spool_queue_locked();
      if (spool_pending_) {
        busy_ = true;
        lock.unlock();
        const bool drained = drain_spool();
        lock.lock();
        busy_ = false;
        if (!drained) {
          outage_ = true;
          spool_queue_locked();
          idle_cv_.notify_all();
          continue;
        }
        outage_ = false;
        spool_pending_ = false;
        spooled_entries_ = 0;
      }
      if (!queue_.empty()) {
        auto body = detail::take_batch(run_id_, queue_);
        busy_ = true;
        space_cv_.notify_all();
        lock.unlock();
        auto r = tracker_->send("POST", "mlflow/runs/log-batch", body);
        lock.lock();
        busy_ = false;
        if (r.retryable()) {
          // The retries are spent: keep this batch and everything queued behind it on disk.
          spooled_entries_ += batch_size(body);
          append_to_spool({body.dump()});
          spool_pending_ = true;
          outage_ = true;
          spool_queue_locked();
        } else if (r.status < 200 || r.status >= 300) {
          try {
            tracker_->raise(r, "log-batch for run " + run_id_);
          } catch (...) {
            if (!error_) error_ = std::current_exception();
          }
        }
      }
    } catch (...) {
      if (!lock.owns_lock()) lock.lock();
      busy_ = false;
      if (!error_) error_ = std::current_exception();
    }
    if (queue_.empty() && !busy_ && !spool_pending_) idle_cv_.notify_all();
    if (error_) idle_cv_.notify_all();
  }
}

}  // namespace mlops
