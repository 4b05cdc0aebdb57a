#include "mlops/trainer.hpp"

#include <charconv>
#include <cmath>
#include <deque>
#include <exception>
#include <limits>
#include <map>
#include <set>
#include <thread>
#include <tuple>

#include "core/text.hpp"
#include "mlops/error.hpp"
#include "mlops/version.hpp"
#include "trainer/backend.hpp"
#include "trainer/cuda_loader.hpp"

namespace mlops {

struct CudaTrainer::Impl {
  TrainerOptions options;
  std::string device = "cpu";
  std::string reason;
  int cuda_ordinal = -1;  // -1: the CPU
  std::shared_ptr<const detail::CudaModule> cuda;

  std::vector<TrainedAdapter> fit_plans(const std::vector<AdapterSpec>& specs, std::vector<detail::AdapterPlan>& plans,
                                        const EpochCallback& on_epoch, const ProgressCallback& on_progress);
  std::vector<detail::AdapterResult> run_cpu(const std::vector<detail::AdapterPlan>& plans, const EpochCallback& on_epoch,
                                             const ProgressCallback& on_progress, std::size_t total);
  std::vector<detail::AdapterResult> run_cuda(const std::vector<detail::AdapterPlan>& plans, const EpochCallback& on_epoch,
                                              const ProgressCallback& on_progress, std::size_t total);
};

namespace {

// "cuda" -> 0, "cuda:3" -> 3; nothing for other strings.
std::optional<int> parse_cuda(const std::string& dev) {
  if (dev == "cuda") return 0;
  if (dev.rfind("cuda:", 0) != 0) return std::nullopt;
  int n = -1;
  const char* b = dev.data() + 5;
  const char* e = dev.data() + dev.size();
  auto r = std::from_chars(b, e, n);
  if (r.ec != std::errc() || r.ptr != e || n < 0 || b == e) return std::nullopt;
  return n;
}

}  // namespace

CudaTrainer::CudaTrainer(TrainerOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  const std::string& dev = impl_->options.device;
  if (dev == "cpu") {
    impl_->reason = "the CPU was requested";
    return;
  }
  const auto ordinal = parse_cuda(dev);
  if (dev != "auto" && !ordinal)
    throw ConfigError("device must be \"auto\", \"cpu\", \"cuda\" or \"cuda:N\", got " + detail::quote_for_message(dev));
  const bool required = dev != "auto";
  std::string why;
  auto module = detail::load_cuda_module(why);
  int count = 0;
  if (module) {
    char err[512] = {0};
    count = module->device_count(err, sizeof err);
    if (count < 0) why = std::string("no usable CUDA device: ") + err;
    else if (count == 0) why = "no CUDA device is visible";
  }
  const int want = ordinal.value_or(0);
  char name[256] = {0};
  if (module && count > want && module->device_name(want, name, sizeof name) != 0) {
    why = "CUDA device " + std::to_string(want) + " (" + name + ") is not supported: compute capability 8.0 or newer is needed";
    count = 0;
  }
  if (module && count > want) {
    impl_->cuda = module;
    impl_->cuda_ordinal = want;
    impl_->device = "cuda:" + std::to_string(want) + " (" + name + ")";
    impl_->reason = required ? "requested" : "a usable GPU was found";
    return;
  }
  if (module && count > 0) why = "device " + dev + " does not exist (" + std::to_string(count) + " CUDA device(s) visible)";
  if (required) throw DeviceError("device " + detail::quote_for_message(dev) + " is not usable: " + why);
  impl_->reason = "using the CPU: " + why;
}

CudaTrainer::~CudaTrainer() = default;
CudaTrainer::CudaTrainer(CudaTrainer&&) noexcept = default;
CudaTrainer& CudaTrainer::operator=(CudaTrainer&&) noexcept = default;

const std::string& CudaTrainer::device() const noexcept { return impl_->device; }
const std::string& CudaTrainer::device_reason() const noexcept { return impl_->reason; }
const TrainerOptions& CudaTrainer::options() const noexcept { return impl_->options; }

std::size_t CudaTrainer::planned_steps(const std::vector<AdapterSpec>& specs) {
  std::size_t total = 0;
  for (const auto& s : specs) {
    if (s.batch_size == 0 || s.epochs < 1 || s.dataset.rows() == 0 || !(s.validation_fraction >= 0 && s.validation_fraction < 1))
      continue;
    const auto n = s.dataset.rows();
    auto n_val = static_cast<std::size_t>(std::floor(static_cast<double>(n) * s.validation_fraction));
    if (s.validation_fraction > 0 && n_val == 0) n_val = 1;
    if (n_val >= n) continue;
    total += static_cast<std::size_t>(s.epochs) * ((n - n_val + s.batch_size - 1) / s.batch_size);
  }
  return total;
}

std::vector<TrainedAdapter> CudaTrainer::fit(const std::vector<AdapterSpec>& specs, const EpochCallback& on_epoch,
                                             const ProgressCallback& on_progress) {
  // Everything is checked before any training starts.
  std::set<std::string> names;
  for (const auto& s : specs) {
    s.validate();
    if (!names.insert(s.name).second)
      throw ConfigError("adapter " + detail::quote_for_message(s.name) + ": field name is used by more than one spec");
  }
  std::vector<detail::AdapterPlan> plans;
  plans.reserve(specs.size());
  for (std::size_t i = 0; i < specs.size(); ++i) plans.push_back(detail::make_plan(specs[i], i, impl_->options.seed));
  return impl_->fit_plans(specs, plans, on_epoch, on_progress);
}

std::vector<TrainedAdapter> CudaTrainer::Impl::fit_plans(const std::vector<AdapterSpec>& specs,
                                                         std::vector<detail::AdapterPlan>& plans,
                                                         const EpochCallback& on_epoch,
                                                         const ProgressCallback& on_progress) {
  const std::size_t total = planned_steps(specs);
  if (plans.empty()) return {};
  auto results = cuda ? run_cuda(plans, on_epoch, on_progress, total) : run_cpu(plans, on_epoch, on_progress, total);
  std::vector<TrainedAdapter> out;
  out.reserve(plans.size());
  for (std::size_t i = 0; i < plans.size(); ++i) {
    const auto& spec = specs[i];
    const auto& ds = spec.dataset;
    nlohmann::json lineage = ds.lineage().to_json();
    lineage["code_commit"] = spec.code_commit;
    lineage["device"] = device;
    lineage["seed"] = options.seed;
    lineage["trainer"] = "mlops " + version();
    nlohmann::json spec_json = spec.params_json();
    spec_json["name"] = spec.name;
    TrainedAdapter t;
    t.name = spec.name;
    t.adapter = Adapter(ds.cols(), spec.hidden, ds.classes(), std::move(results[i].params), ds.lineage().featurizer,
                        std::move(spec_json), lineage);
    t.history = std::move(results[i].history);
    t.lineage = std::move(lineage);
    t.device = device;
    out.push_back(std::move(t));
  }
  return out;
}

std::vector<detail::AdapterResult> CudaTrainer::Impl::run_cpu(const std::vector<detail::AdapterPlan>& plans,
                                                              const EpochCallback& on_epoch,
                                                              const ProgressCallback& on_progress, std::size_t total) {
  detail::ProgressSink sink;
  std::vector<detail::AdapterResult> results;
  std::exception_ptr worker_error;
  std::thread worker([&] {
    try {
      results = detail::train_cpu(plans, options.threads, sink);
    } catch (...) {
      worker_error = std::current_exception();
    }
    sink.finish();
  });
  // Callbacks run here, on the caller's thread; one that throws stops the workers.
  std::exception_ptr callback_error;
  std::deque<detail::ProgressSink::Event> events;
  std::size_t last_done = static_cast<std::size_t>(-1), last_planned = 0;
  for (bool finished = false; !finished;) {
    finished = sink.wait(events, 100);
    if (callback_error) {
      events.clear();
      continue;
    }
    try {
      for (const auto& e : events)
        if (on_epoch) on_epoch(plans[e.adapter].spec->name, e.metrics.epoch, e.metrics);
      events.clear();
      const std::size_t done = sink.done();
      const std::size_t planned = total - sink.dropped();
      if (on_progress && (done != last_done || planned != last_planned)) {
        on_progress(done, planned);
        last_done = done;
        last_planned = planned;
      }
    } catch (...) {
      callback_error = std::current_exception();
      sink.cancel = true;
    }
  }
  worker.join();
  if (callback_error) std::rethrow_exception(callback_error);
  if (worker_error) std::rethrow_exception(worker_error);
  return results;
}

namespace {

// State the CUDA module's callbacks reach through their ctx pointer.
struct CudaGroupContext {
  const std::vector<const detail::AdapterPlan*>* group;
  std::vector<detail::EpochTracker>* trackers;
  const EpochCallback* on_epoch;
  const ProgressCallback* on_progress;
  std::size_t* done;
  std::size_t* dropped;
  std::size_t total;
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

}  // namespace

std::vector<detail::AdapterResult> CudaTrainer::Impl::run_cuda(const std::vector<detail::AdapterPlan>& plans,
                                                               const EpochCallback& on_epoch,
                                                               const ProgressCallback& on_progress, std::size_t total) {
  // Adapters of one shape (d, h, k) train in one call of the module.
  std::map<std::tuple<std::size_t, std::size_t, std::size_t>, std::vector<const detail::AdapterPlan*>> groups;
  for (const auto& p : plans) groups[{p.layout.d, p.layout.h, p.layout.k}].push_back(&p);
  std::vector<detail::AdapterResult> results(plans.size());
  std::size_t done = 0, dropped = 0;
  for (auto& [shape, group] : groups) {
    std::vector<detail::EpochTracker> trackers;
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
      a.batch_size = static_cast<int32_t>(std::min<std::size_t>(s.batch_size, p->train_rows.size()));
      a.epochs = s.epochs;
      a.optimizer = s.optimizer == "adam" ? MLOPS_CUDA_OPT_ADAM : MLOPS_CUDA_OPT_SGD;
      a.learning_rate = static_cast<float>(s.learning_rate);
      a.l2 = static_cast<float>(s.l2);
      a.momentum = static_cast<float>(s.momentum);
      a.class_weights = p->class_weights.data();
      a.init_params = p->init_params.data();
      a.out_params = r.params.data();
      adapters.push_back(a);
    }
    CudaGroupContext ctx{&group, &trackers, &on_epoch, &on_progress, &done, &dropped, total, nullptr};
    MlopsCudaJob job{};
    job.device = cuda_ordinal;
    job.deterministic = options.deterministic ? 1 : 0;
    job.d = static_cast<int64_t>(std::get<0>(shape));
    job.h = static_cast<int64_t>(std::get<1>(shape));
    job.k = static_cast<int64_t>(std::get<2>(shape));
    job.n_adapters = static_cast<int32_t>(adapters.size());
    job.adapters = adapters.data();
    job.callbacks = {&ctx, &cuda_epoch_order, &cuda_on_epoch, &cuda_on_steps};
    char err[1024] = {0};
    const int32_t rc = cuda->train(&job, err, sizeof err);
    if (ctx.error) std::rethrow_exception(ctx.error);
    if (rc == MLOPS_CUDA_ERR_OOM) throw DeviceError(device + ": out of device memory: " + err);
    if (rc == MLOPS_CUDA_ERR_INVALID) throw InternalError(device + ": the CUDA module rejected the job: " + err);
    if (rc != MLOPS_CUDA_OK) throw DeviceError(device + ": " + err);
    for (std::size_t i = 0; i < group.size(); ++i) results[group[i]->index].history = trackers[i].history();
  }
  return results;
}

}  // namespace mlops
