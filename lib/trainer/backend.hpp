// The backends behind CudaTrainer::fit, and how they report progress to the caller's thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "trainer/plan.hpp"

namespace mlops::detail {

/// The outcome of one adapter: final parameters (layout of its plan) and history.
struct AdapterResult {
  std::vector<float> params;
  History history;
};

/// Collects epoch events and step counts from any thread; the caller's thread drains them.
class ProgressSink {
 public:
  struct Event {
    std::size_t adapter;  ///< index into the plans
    EpochMetrics metrics;
  };
  void epoch(std::size_t adapter, const EpochMetrics& m);
  void steps(std::size_t n) { done_.fetch_add(n, std::memory_order_relaxed); }
  void drop_planned(std::size_t n) { dropped_.fetch_add(n, std::memory_order_relaxed); }
  /// Called by the workers when they are all finished.
  void finish();
  /// Waits up to `ms` for news; returns the events so far and whether the workers have finished.
  bool wait(std::deque<Event>& out, int ms);
  std::size_t done() const { return done_.load(std::memory_order_relaxed); }
  std::size_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  std::atomic<bool> cancel{false};

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> events_;
  bool finished_ = false;
  std::atomic<std::size_t> done_{0}, dropped_{0};
};

/// Trains every plan on the CPU with `threads` workers (each adapter on one thread, so results do not
/// depend on the thread count). Returns results in plan order; stops early when sink.cancel is set.
/// Rethrows the first worker exception.
std::vector<AdapterResult> train_cpu(const std::vector<AdapterPlan>& plans, unsigned threads, ProgressSink& sink);

struct CudaModule;

/// Trains every plan on the GPU `ordinal` through the CUDA module, one module call per shape (d, h, k).
/// `device` names the GPU in messages, `memory_limit` is TrainerOptions::device_memory_limit; the module's notices (a step that ran without a CUDA graph, a
/// group split into sub-groups) are appended to `notes`. The callbacks run on the calling thread; an
/// exception from one stops training and is rethrown. @throws DeviceError for a device failure or
/// out-of-memory
std::vector<AdapterResult> train_cuda(const CudaModule& module, int ordinal, const std::string& device,
                                      std::uint64_t memory_limit, const std::vector<AdapterPlan>& plans, const EpochCallback& on_epoch,
                                      const ProgressCallback& on_progress, std::size_t total,
                                      std::vector<std::string>& notes);

/// The adapter after one epoch of training, for the backends' shared per-epoch evaluation on the host.
EpochMetrics evaluate_cpu(const AdapterPlan& plan, const float* params, int epoch, double train_loss_sum);

}  // namespace mlops::detail
