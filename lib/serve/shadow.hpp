// Shadow traffic: a second release whose models score the same rows as the served ones, off the response
// path, so a candidate can be compared with production on real requests before it ships (internal).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "mlops/serve.hpp"
#include "serve/scoring.hpp"

namespace mlops::detail {

/// Owns the shadow release and the one thread that scores with it (started with the first shadow release). A served request hands its rows and
/// the labels it answered with to offer(), which never blocks: a full queue drops the rows (counted). The
/// shadow thread predicts the same rows with the shadow release's model of the same name and counts, per
/// model, rows whose labels agree and disagree. A model is shadowed only where the shadow release holds
/// another version of it. Counters are per (model, version, shadow version): a switch of either release
/// starts new series for the pairs it changes and drops those no longer served.
class Shadow {
 public:
  explicit Shadow(std::size_t queue_capacity);
  ~Shadow();
  Shadow(const Shadow&) = delete;
  Shadow& operator=(const Shadow&) = delete;

  /// The shadow release, or nullptr when none is set.
  [[nodiscard]] std::shared_ptr<const Release> release() const;
  /// Sets (or, with nullptr, clears) the shadow release; `primary` is the release being served.
  void set(std::shared_ptr<const Release> shadow, const Release& primary);
  /// The served release switched to `primary`: re-pairs its models with the shadow's.
  void primary_switched(const Release& primary);

  /// Queues `rows` (moved from) for the shadow model paired with `served`, with the labels the client got.
  /// Does nothing when `served` has no shadow pair. Never blocks and never throws.
  void offer(const ServedModel& served, ScoringRows& rows, const nlohmann::json& labels) noexcept;

  /// {"shadow": md5 | null, "queued": n (waiting or being scored), "dropped": n, "errors": n,
  ///  "models": [{"model", "version", "shadow_version", "requests", "rows", "agree", "disagree", "agreement"}]}
  [[nodiscard]] nlohmann::json summary() const;
  /// The mlops_shadow_* series of /metrics (Prometheus text), appended to `out`.
  void write_metrics(std::string& out) const;
  /// Stops the shadow thread; rows still queued are not scored.
  void stop();

 private:
  struct Pair {
    std::int64_t version = 0, shadow_version = 0;
    const ServedModel* shadow_model = nullptr;
    std::uint64_t requests = 0, rows = 0, agree = 0, disagree = 0;
  };
  struct Job {
    std::shared_ptr<const Release> shadow;  // keeps shadow_model alive across a switch
    const ServedModel* shadow_model = nullptr;
    std::string name;
    std::int64_t version = 0;
    ScoringRows rows;
    nlohmann::json labels;
  };
  void pair_models(const Release& primary);  // with mu_ held
  void loop();
  void score(Job& job);

  const std::size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable ready_;
  std::shared_ptr<const Release> shadow_;
  std::map<std::string, Pair> pairs_;  // by model name: the models both releases hold in different versions
  std::deque<Job> queue_;
  std::uint64_t dropped_ = 0, errors_ = 0;
  std::size_t in_flight_ = 0;  // taken from the queue, not yet counted
  bool stopping_ = false;
  std::atomic<bool> active_{false};  // a shadow release is set: lets offer() skip the lock when none is
  std::thread thread_;
};

}  // namespace mlops::detail
