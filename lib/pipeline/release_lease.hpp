// The lease that serializes release() and rollback() per release experiment (internal).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace mlops {
class MlflowTracker;
}

namespace mlops::detail {

/// Exclusive right to move the aliases of one release experiment, recorded in MLflow so that it holds
/// across processes and machines.
///
/// Generation n of the lease is the registered model `mlops.lease.<16 hex of the experiment>.<n>`;
/// creating a registered model is atomic in MLflow, so of two processes that both try to create
/// generation n+1 exactly one succeeds. Generation n is free once its holder tagged it released or its
/// `mlops.lease.expires_ms` has passed (a killed holder blocks the others for one time-to-live at most).
class ReleaseLease {
 public:
  /// Takes the lease, waiting up to `wait` while another process holds it.
  /// @throws ConflictError naming the holder and its expiry when the wait ends first
  /// @throws TrackingError when MLflow cannot be asked
  ReleaseLease(MlflowTracker& tracker, const std::string& experiment, std::chrono::milliseconds ttl,
               std::chrono::milliseconds wait);
  /// Gives the lease back (best effort: an expiry ends it anyway). Never throws.
  ~ReleaseLease();
  ReleaseLease(const ReleaseLease&) = delete;
  ReleaseLease& operator=(const ReleaseLease&) = delete;

  /// @throws ConflictError when the lease expired and another process took it since.
  void check_held();

  /// The generation held.
  [[nodiscard]] std::int64_t generation() const noexcept { return generation_; }

 private:
  struct Generation;
  std::string model_name(std::int64_t generation) const;

  MlflowTracker& tracker_;
  std::string experiment_;
  std::string prefix_;
  std::string holder_;
  std::int64_t generation_ = 0;
};

}  // namespace mlops::detail
