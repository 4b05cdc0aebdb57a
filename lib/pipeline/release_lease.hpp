// The lease that serializes release() and rollback() per release experiment (internal).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mlops/manifest.hpp"

namespace mlops {
class MlflowTracker;
}

namespace mlops::detail {

/// Exclusive right to move the aliases of one release experiment, recorded in MLflow so that it holds
/// across processes and machines.
///
/// Generation n of the lease is the registered model `mlops.lease.<16 hex of the experiment>.<n>`;
/// creating a registered model is atomic in MLflow, so of two processes that both try to create
/// generation n+1 exactly one succeeds. A background thread renews the generation held (an update of
/// that registered model, which MLflow stamps with its own clock) every third of the time-to-live.
/// Generation n is free once its holder tagged it released, or once the tracker's clock is past its
/// last renewal plus its time-to-live: no two clients' wall clocks are ever compared.
///
/// Fencing: MLflow has no conditional write, so a write cannot carry the generation to the server.
/// Instead the holder keeps, on its own steady clock, the time by which its lease surely still stands
/// (the send time of its last answered renewal plus the time-to-live, less a tenth); a waiter can take
/// the lease over only after that. Every write goes out only before that time, and a write whose answer
/// came later may have landed after another process took over: then the holder puts the value back to
/// what the newest holder applies (recorded in the generation before it moves any alias) and gives up
/// with a ConflictError.
class ReleaseLease {
 public:
  /// Takes the lease, waiting up to `wait` while another process holds it.
  /// @throws ConfigError when `ttl` is not positive
  /// @throws ConflictError naming the holder when the wait ends first
  /// @throws TrackingError when MLflow cannot be asked
  ReleaseLease(MlflowTracker& tracker, const std::string& experiment, std::chrono::milliseconds ttl,
               std::chrono::milliseconds wait);
  /// Stops renewing and gives the lease back (best effort: an expiry ends it anyway). Never throws.
  ~ReleaseLease();
  ReleaseLease(const ReleaseLease&) = delete;
  ReleaseLease& operator=(const ReleaseLease&) = delete;

  /// Records the release run this holder applies; call it before moving any alias.
  /// @throws ConflictError when the lease is no longer surely held
  void record_target(const std::string& release_run_id);

  /// Points `alias` of model `name` at `version` (0: removes the alias), fenced as described above.
  /// `previous` (0: none) is what the alias pointed at before this holder moved it; it is put back when a
  /// later holder has not yet said what it applies. With `released` false (a staging alias) a late write
  /// is reported but not put back.
  /// @throws ConflictError when the lease was not surely held before or after the write
  /// @throws NotFoundError, TrackingError from MLflow
  void move_alias(const std::string& name, const std::string& alias, std::int64_t version, std::int64_t previous,
                  bool released = true);

  /// Sets tag `key` of run `run_id` to `value`, fenced: a write that may have landed after another
  /// process took the lease is set back to `previous`.
  /// @throws ConflictError when the lease was not surely held before or after the write
  void set_run_tag(const std::string& run_id, const std::string& key, const std::string& value,
                   const std::string& previous);

  /// @throws ConflictError when the lease is no longer surely held or another process took it since.
  void check_held();

  /// The generation held.
  [[nodiscard]] std::int64_t generation() const noexcept { return generation_; }

  struct Generation;

 private:
  using Clock = std::chrono::steady_clock;

  std::string model_name(std::int64_t generation) const;
  std::vector<Generation> generations();
  /// Now in the tracker's clock: the timestamp MLflow gives an update of the clock model.
  std::int64_t tracker_now_ms();
  /// Whether the lease surely stands at `t` (a time this process saw).
  bool held_at(Clock::time_point t);
  /// @throws ConflictError when the lease does not surely stand now
  void ensure_held();
  [[noreturn]] void throw_lost(const std::string& what);
  /// Runs `write` while the lease surely stands; when its answer came later, runs `put_back` (which may
  /// throw) and throws ConflictError naming `what`.
  void fenced(const std::string& what, const std::function<void()>& write, const std::function<void()>& put_back);
  /// After a late alias write: moves the alias to what the newest later holder applies (or `previous`).
  void put_back_alias(const std::string& name, const std::string& alias, std::int64_t previous);
  /// Version of `name` in the release of run `run_id` (0: not in it).
  std::int64_t target_version(const std::string& run_id, const std::string& name);
  void renew_loop();

  MlflowTracker& tracker_;
  std::unique_ptr<MlflowTracker> renewer_tracker_;  ///< few retries, short timeout: never holds up the destructor long
  std::string experiment_;
  std::string prefix_;
  std::string holder_;
  std::string description_;
  std::chrono::milliseconds ttl_;
  std::int64_t generation_ = 0;

  std::mutex mutex_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  bool lost_ = false;
  Clock::time_point surely_until_;  ///< the lease stands at least until then (guarded by mutex_)
  std::thread renewer_;

  std::mutex targets_mutex_;
  std::map<std::string, ReleaseManifest> targets_;  ///< manifests of later holders' releases, by run id
};

}  // namespace mlops::detail
