#include "pipeline/release_lease.hpp"

#include <unistd.h>

#include <algorithm>
#include <optional>
#include <random>

#include "core/hash.hpp"
#include "core/text.hpp"
#include "mlops/error.hpp"
#include "mlops/mlflow.hpp"
#include "mlops/tags.hpp"
#include "pipeline/internal.hpp"

namespace mlops::detail {

namespace {

std::string tag(const RegisteredModel& model, const char* key) {
  const auto it = model.tags.find(key);
  return it == model.tags.end() ? "" : it->second;
}

std::int64_t to_int(const std::string& text) {
  std::int64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9' || v > (INT64_MAX - 9) / 10) return 0;
    v = v * 10 + (c - '0');
  }
  return v;
}

// tags::kLeaseExpires for holders from before renewals, which read only that (this process's wall clock
// plus `ttl`); without it they would take a renewed generation over at once. Refreshed at each renewal.
std::string legacy_expiry(std::chrono::milliseconds ttl) {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(now + ttl).count());
}

// Puts back a late write this many times at most when yet another process takes the lease meanwhile.
constexpr int kPutBackRounds = 8;

}  // namespace

struct ReleaseLease::Generation {
  std::int64_t number = 0;
  std::string holder;
  std::int64_t ttl_ms = 0;        ///< 0: a generation from before renewals, judged by expires_ms
  std::int64_t renewed_ms = 0;    ///< MLflow's last_updated_timestamp: creation or the last renewal
  std::int64_t expires_ms = 0;
  std::string target;             ///< the release run its holder applies (empty until recorded)
  bool released = false;

  // Whether the tracker's clock at `now` is past this generation's lease.
  [[nodiscard]] bool expired(std::int64_t now) const {
    return ttl_ms > 0 ? renewed_ms + ttl_ms < now : expires_ms < now;
  }
};

std::string ReleaseLease::model_name(std::int64_t generation) const { return prefix_ + std::to_string(generation); }

// Every generation of the lease, oldest first.
std::vector<ReleaseLease::Generation> ReleaseLease::generations() {
  std::vector<Generation> out;
  for (const auto& m : tracker_.search_registered_models("name LIKE '" + prefix_ + "%'", 1000)) {
    if (!m.name.starts_with(prefix_)) continue;
    Generation g;
    g.number = to_int(m.name.substr(prefix_.size()));
    if (g.number == 0) continue;  // the clock model
    g.holder = tag(m, tags::kLeaseHolder);
    g.ttl_ms = to_int(tag(m, tags::kLeaseTtl));
    g.renewed_ms = m.last_updated_timestamp;
    g.expires_ms = to_int(tag(m, tags::kLeaseExpires));
    g.target = tag(m, tags::kLeaseTarget);
    g.released = tag(m, tags::kLeaseReleased) == "1";
    out.push_back(std::move(g));
  }
  std::sort(out.begin(), out.end(), [](const Generation& a, const Generation& b) { return a.number < b.number; });
  return out;
}

std::int64_t ReleaseLease::tracker_now_ms() {
  const std::string clock = prefix_ + "clock";
  const nlohmann::json body = {{"name", clock}, {"description", description_}};
  nlohmann::json answer;
  try {
    answer = tracker_.call("PATCH", "mlflow/registered-models/update", body);
  } catch (const NotFoundError&) {
    tracker_.create_registered_model(clock, {{tags::kLeaseExperiment, experiment_.substr(0, 5000)}}, description_);
    answer = tracker_.call("PATCH", "mlflow/registered-models/update", body);
  }
  const std::int64_t now = RegisteredModel::from_json(answer.at("registered_model")).last_updated_timestamp;
  if (now <= 0) throw TrackingError("MLflow answered an update of " + clock + " without a last_updated_timestamp");
  return now;
}

ReleaseLease::ReleaseLease(MlflowTracker& tracker, const std::string& experiment, std::chrono::milliseconds ttl,
                           std::chrono::milliseconds wait)
    : tracker_(tracker), experiment_(experiment), ttl_(ttl) {
  if (ttl.count() <= 0) throw ConfigError("the release lease's time-to-live must be positive");
  prefix_ = std::string(tags::kLeasePrefix) + sha256_hex(experiment).substr(0, 16) + ".";
  description_ = "Lease of the release experiment " + experiment + "; managed by mlops.";
  std::random_device rd;
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  holder_ = std::string(host) + ":" + std::to_string(::getpid()) + ":" + std::to_string(rd()) + std::to_string(rd());
  std::mt19937 rng(rd());
  const auto deadline = Clock::now() + wait;
  while (true) {
    // The clock is read before the generations, so a renewal the read does not show came after it.
    const std::int64_t now = tracker_now_ms();
    const auto all = generations();
    const Generation* top = all.empty() ? nullptr : &all.back();
    if (top == nullptr || top->released || top->expired(now)) {
      const std::int64_t next = top ? top->number + 1 : 1;
      const auto sent = Clock::now();
      const bool created = tracker_.create_registered_model(
          model_name(next),
          {{tags::kLeaseHolder, holder_},
           {tags::kLeaseTtl, std::to_string(ttl.count())},
           {tags::kLeaseExpires, legacy_expiry(ttl)},
           {tags::kLeaseExperiment, experiment.substr(0, 5000)}},
          description_);
      if (created) {
        generation_ = next;
      } else {
        // Another process made this generation first, unless the answer to our own create was lost.
        for (const auto& g : generations())
          if (g.number == next && g.holder == holder_) generation_ = next;
      }
      if (generation_ != 0) {
        surely_until_ = sent + ttl_ - ttl_ / 10;
        // Generations before the previous one are of no further use (best effort).
        for (const auto& g : all)
          if (g.number + 1 < next) {
            try {
              tracker_.delete_registered_model(model_name(g.number));
            } catch (const Error&) {
            }
          }
        MlflowOptions quick = tracker_.options();
        quick.max_retries = 1;
        quick.backoff_factor = 0.1;
        quick.backoff_jitter = 0.1;
        quick.timeout_seconds = std::max<long>(1, static_cast<long>(ttl_.count() / 3000));
        renewer_tracker_ = std::make_unique<MlflowTracker>(quick);
        renewer_ = std::thread([this] { renew_loop(); });
        return;
      }
      continue;
    }
    if (Clock::now() >= deadline) {
      const std::string since = top->ttl_ms > 0
                                    ? "renewed " + std::to_string(std::max<std::int64_t>(0, now - top->renewed_ms)) +
                                          " ms ago by MLflow's clock, time-to-live " + std::to_string(top->ttl_ms) +
                                          " ms"
                                    : "until " + std::to_string(top->expires_ms) + " ms since the epoch";
      throw ConflictError("another release or rollback of " + quote_for_message(experiment, 200) +
                          " holds the lease (" + quote_for_message(top->holder, 120) + ", " + since +
                          "); run the command again when it is done");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 400));
  }
}

void ReleaseLease::renew_loop() {
  const nlohmann::json body = {{"name", model_name(generation_)}, {"description", description_}};
  std::unique_lock lock(mutex_);
  while (!stopping_ && !lost_) {
    stop_cv_.wait_for(lock, ttl_ / 3, [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    const auto sent = Clock::now();
    bool renewed = false;
    try {
      renewer_tracker_->call("PATCH", "mlflow/registered-models/update", body);
      renewed = true;
      renewer_tracker_->set_registered_model_tag(model_name(generation_), tags::kLeaseExpires, legacy_expiry(ttl_));
    } catch (const std::exception&) {  // on its own thread: nothing may escape; the next tick tries again
    }
    lock.lock();
    // A renewal answered after the lease may have lapsed does not count: a waiter may have judged it
    // expired before the renewal landed.
    if (Clock::now() >= surely_until_) lost_ = true;
    else if (renewed) surely_until_ = sent + ttl_ - ttl_ / 10;
  }
}

bool ReleaseLease::held_at(Clock::time_point t) {
  std::lock_guard lock(mutex_);
  if (t >= surely_until_) lost_ = true;
  return !lost_;
}

void ReleaseLease::throw_lost(const std::string& what) {
  throw ConflictError("the release lease of " + quote_for_message(experiment_, 200) +
                      " was not renewed within its time-to-live (" + std::to_string(ttl_.count()) +
                      " ms: this process was paused or MLflow did not answer) and may have passed to another "
                      "process; " + what + "nothing is reported complete; run the command again");
}

void ReleaseLease::ensure_held() {
  if (!held_at(Clock::now())) throw_lost("");
}

void ReleaseLease::fenced(const std::string& what, const std::function<void()>& write,
                          const std::function<void()>& put_back) {
  ensure_held();
  try {
    write();
  } catch (const Error&) {
    // A write whose retries ran out may still have landed; after the lease stood it is put back too.
    if (held_at(Clock::now())) throw;
  }
  if (held_at(Clock::now())) return;  // answered while the lease stood: it landed before any takeover
  std::string done = what + " was answered after that and was undone where another process took over; ";
  try {
    put_back();
  } catch (const Error& e) {
    done = what + " was answered after that and undoing it failed (" + e.what() + "); ";
  }
  throw_lost(done);
}

void ReleaseLease::record_target(const std::string& release_run_id) {
  ensure_held();
  tracker_.set_registered_model_tag(model_name(generation_), tags::kLeaseTarget, release_run_id);
  ensure_held();
}

std::int64_t ReleaseLease::target_version(const std::string& run_id, const std::string& name) {
  std::unique_lock lock(targets_mutex_);
  auto it = targets_.find(run_id);
  if (it == targets_.end()) {
    lock.unlock();
    ReleaseManifest m = pipeline::record_from_run(tracker_, tracker_.get_run(run_id)).manifest;
    lock.lock();
    it = targets_.emplace(run_id, std::move(m)).first;
  }
  return it->second.contains(name) ? it->second.at(name) : 0;
}

void ReleaseLease::put_back_alias(const std::string& name, const std::string& alias, std::int64_t previous) {
  auto all = generations();
  for (int round = 0; round < kPutBackRounds; ++round) {
    if (all.empty() || all.back().number <= generation_) return;  // nobody took over: it landed before any other
    // The newest later holder that said what it applies; none yet: it has moved nothing and finds the alias
    // as this holder found it.
    std::int64_t want = previous;
    for (auto g = all.rbegin(); g != all.rend() && g->number > generation_; ++g)
      if (!g->target.empty()) {
        want = target_version(g->target, name);
        break;
      }
    if (want == 0) {
      try {
        tracker_.delete_alias(name, alias);
      } catch (const NotFoundError&) {
      }
    } else {
      tracker_.set_alias(name, alias, want);
    }
    // That write may itself have come after yet another takeover or target: then align with that one.
    auto after = generations();
    if (after.empty() || after.back().number == all.back().number && after.back().target == all.back().target) return;
    all = std::move(after);
  }
  throw ConflictError("the release lease of " + quote_for_message(experiment_, 200) + " kept changing hands while " +
                      quote_for_message(name) + " was put back");
}

void ReleaseLease::move_alias(const std::string& name, const std::string& alias, std::int64_t version,
                              std::int64_t previous, bool released) {
  const std::string what = "moving " + quote_for_message(alias) + " of " + quote_for_message(name);
  fenced(
      what,
      [&] {
        if (version == 0) tracker_.delete_alias(name, alias);
        else tracker_.set_alias(name, alias, version);
      },
      [&] {
        if (released) put_back_alias(name, alias, previous);
      });
}

void ReleaseLease::set_run_tag(const std::string& run_id, const std::string& key, const std::string& value,
                               const std::string& previous) {
  fenced(
      "setting " + quote_for_message(key) + " of run " + run_id,
      [&] { tracker_.set_run_tag(run_id, key, value); },
      [&] {
        const auto all = generations();
        if (!all.empty() && all.back().number > generation_) tracker_.set_run_tag(run_id, key, previous);
      });
}

void ReleaseLease::check_held() {
  ensure_held();
  for (const auto& g : generations())
    if (g.number > generation_)
      throw ConflictError("the release lease of " + quote_for_message(experiment_, 200) +
                          " expired while this command held it and " + quote_for_message(g.holder, 120) +
                          " took it: nothing is reported complete; run the command again");
}

ReleaseLease::~ReleaseLease() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (renewer_.joinable()) renewer_.join();
  try {
    tracker_.set_registered_model_tag(model_name(generation_), tags::kLeaseReleased, "1");
  } catch (...) {
  }
}

}  // namespace mlops::detail
