// The CUDA backend's host side: turns plans into jobs of the separately loaded CUDA module (one job per
// shape d, h, k), and relays the module's C callbacks to the trainer's callbacks on the caller's thread.
#include <exception>
#include <limits>
#include <map>
#include <tuple>

#include "mlops/error.hpp"
#include "trainer/backend.hpp"
#include "trainer/cuda_loader.hpp"

namespace mlops::detail {

namespace {

// State the CUDA module's callbacks reach through their ctx pointer.
struct CudaGroupContext {
  const std::vector<const AdapterPlan*>* group;
  std::vector<EpochTracker>* trackers;
  const EpochCallback* on_epoch;
  const ProgressCallback* on_progress;
  std::size_t* done;
  std::size_t* dropped;
  std::size_t total;
  std::vector<std::string>* notes;
  std::exception_ptr error;
};

// The module calls these through a C interface: nothing may throw out of them.
void cuda_epoch_order(void* ctx, int32_t adapter, int32_t epoch, uint32_t* out) noexcept {
  const auto* c = static_cast<const CudaGroupContext*>(ctx);
  (*c->group)[static_cast<std::size_t>(adapter)]->epoch_order(epoch, out);
}

int32_t cuda_on_epoch(void* ctx, int32_t adapter, int32_t epoch, double train_ce_sum, double weight_norm2,
                      double val_ce_sum, int64_t val_correct) noexcept {
  auto* c = static_cast<CudaGroupContext*>(ctx);
  if (c->error) return MLOPS_CUDA_CANCEL;
  try {
    const auto& plan = *(*c->group)[static_cast<std::size_t>(adapter)];
    EpochMetrics m;
    m.epoch = epoch;
    m.loss = train_ce_sum / static_cast<double>(plan.train_rows.size()) + 0.5 * plan.spec->l2 * weight_norm2;
    if (plan.val_rows.empty()) {
      m.val_loss = m.val_accuracy = std::numeric_limits<double>::quiet_NaN();
    } else {
      m.val_loss = val_ce_sum / static_cast<double>(plan.val_rows.size());
      m.val_accuracy = static_cast<double>(val_correct) / static_cast<double>(plan.val_rows.size());
    }
    const auto d = (*c->trackers)[static_cast<std::size_t>(adapter)].record(m);
    if (d.stop && epoch < plan.spec->epochs)
      *c->dropped += static_cast<std::size_t>(plan.spec->epochs - epoch) * plan.steps_per_epoch;
    if (*c->on_epoch) (*c->on_epoch)(plan.spec->name, epoch, m);
    return (d.keep ? MLOPS_CUDA_KEEP : 0) | (d.stop ? MLOPS_CUDA_STOP : 0);
  } catch (...) {
    c->error = std::current_exception();
    return MLOPS_CUDA_CANCEL;
  }
}

int32_t cuda_on_steps(void* ctx, int64_t steps) noexcept {
  auto* c = static_cast<CudaGroupContext*>(ctx);
  if (c->error) return 1;
  *c->done += static_cast<std::size_t>(steps);
  try {
    if (*c->on_progress) (*c->on_progress)(*c->done, c->total - *c->dropped);
  } catch (...) {
    c->error = std::current_exception();
    return 1;
  }
  return 0;
}

void cuda_on_notice(void* ctx, const char* message) noexcept {
  auto* c = static_cast<CudaGroupContext*>(ctx);
  try {
    c->notes->emplace_back(message);
  } catch (...) {  // out of memory for a note: the note is dropped, training goes on
  }
}

// The module's number for an optimiser (a switch, so that a new enum value without one is a warning).
int32_t module_optimizer(Optimizer o) {
  switch (o) {
    case Optimizer::adam:
      return MLOPS_CUDA_OPT_ADAM;
    case Optimizer::sgd:
      return MLOPS_CUDA_OPT_SGD;
  }
  throw InternalError("the CUDA module has no optimiser " + std::string(to_string(o)));
}

}  // namespace

std::vector<AdapterResult> train_cuda(const CudaModule& cuda, int ordinal, const std::string& device,
                                      std::uint64_t memory_limit, const std::vector<AdapterPlan>& plans,
                                      const EpochCallback& on_epoch, const ProgressCallback& on_progress,
                                      std::size_t total, std::vector<std::string>& notes) {
  // Adapters of one shape (d, h, k) train in one call of the module.
  std::map<std::tuple<std::size_t, std::size_t, std::size_t>, std::vector<const AdapterPlan*>> groups;
  for (const auto& p : plans) groups[{p.layout.d, p.layout.h, p.layout.k}].push_back(&p);
  std::vector<AdapterResult> results(plans.size());
  std::size_t done = 0, dropped = 0;
  for (auto& [shape, group] : groups) {
    std::vector<EpochTracker> trackers;
    std::vector<MlopsCudaAdapter> adapters;
    for (const auto* p : group) {
      const auto& s = *p->spec;
      trackers.emplace_back(s, !p->val_rows.empty());
      auto& r = results[p->index];
      r.params.assign(p->layout.size(), 0.0f);
      MlopsCudaAdapter a{};
      a.X = s.dataset.X().data();
      a.y = s.dataset.y().data();
      a.rows = static_cast<int64_t>(s.dataset.rows());
      a.val_rows = p->val_rows.data();
      a.n_val = static_cast<int64_t>(p->val_rows.size());
      a.n_train = static_cast<int64_t>(p->train_rows.size());
      a.batch_size = static_cast<int32_t>(std::min<std::size_t>(static_cast<std::size_t>(s.batch_size), p->train_rows.size()));
      a.epochs = static_cast<int32_t>(s.epochs);
      a.optimizer = module_optimizer(s.optimizer);
      a.learning_rate = static_cast<float>(s.learning_rate);
      a.l2 = static_cast<float>(s.l2);
      a.momentum = static_cast<float>(s.momentum);
      a.class_weights = p->class_weights.data();
      a.init_params = p->init_params.data();
      a.out_params = r.params.data();
      adapters.push_back(a);
    }
    CudaGroupContext ctx{&group, &trackers, &on_epoch, &on_progress, &done, &dropped, total, &notes, nullptr};
    MlopsCudaJob job{};
    job.device = ordinal;
    job.deterministic = 1;
    job.memory_limit = memory_limit;
    job.d = static_cast<int64_t>(std::get<0>(shape));
    job.h = static_cast<int64_t>(std::get<1>(shape));
    job.k = static_cast<int64_t>(std::get<2>(shape));
    job.n_adapters = static_cast<int32_t>(adapters.size());
    job.adapters = adapters.data();
    job.callbacks = {&ctx, &cuda_epoch_order, &cuda_on_epoch, &cuda_on_steps, &cuda_on_notice};
    char err[1024] = {0};
    const int32_t rc = cuda.train(&job, err, sizeof err);
    if (ctx.error) std::rethrow_exception(ctx.error);
    if (rc == MLOPS_CUDA_ERR_OOM) throw DeviceError(device + ": out of device memory: " + err);
    if (rc == MLOPS_CUDA_ERR_HOST_MEMORY) throw DeviceError(device + ": out of host memory: " + err);
    if (rc == MLOPS_CUDA_ERR_INVALID) throw InternalError(device + ": the CUDA module rejected the job: " + err);
    if (rc != MLOPS_CUDA_OK) throw DeviceError(device + ": " + err);
    for (std::size_t i = 0; i < group.size(); ++i) results[group[i]->index].history = trackers[i].history();
  }
  return results;
}

}  // namespace mlops::detail
