#include "mlops/trainer.hpp"

#include <dlfcn.h>

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

// The CUDA runtime reports a missing driver as "CUDA driver version is insufficient for CUDA runtime
// version"; a machine without one is told so plainly instead.
bool nvidia_driver_present() {
  void* h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (h == nullptr) return false;
  dlclose(h);
  return true;
}

}  // namespace

CudaTrainer::CudaTrainer(TrainerOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  const std::string& dev = impl_->options.device;
  if (!impl_->options.deterministic)
    throw ConfigError("deterministic=false is not a mode of this trainer: every backend is deterministic (no "
                      "atomics in any reduction, on the CPU or the GPU) at no cost worth trading for");
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
    if (count < 0)
      why = nvidia_driver_present() ? std::string("no usable CUDA device: ") + err
                                    : "no NVIDIA driver (libcuda.so.1 is not on the loader path)";
    else if (count == 0) why = "no CUDA device is visible";
  }
  const int want = ordinal.value_or(0);
  char name[256] = {0};
  if (module && count > want) {
    const int32_t rc = module->device_name(want, name, sizeof name);
    if (rc == 2)
      why = "CUDA device " + std::to_string(want) + " (" + name + ") is not supported: compute capability 8.0 or newer is needed";
    else if (rc != 0)
      why = "CUDA device " + std::to_string(want) + " cannot be queried: " + name;
    if (rc != 0) count = 0;
  }
  if (module && count > want) {
    impl_->cuda = module;
    impl_->cuda_ordinal = want;
    impl_->device = "cuda:" + std::to_string(want) + " (" + name + ")";
    impl_->reason = std::string(required ? "requested" : "a usable GPU was found") + " (CUDA module " + module->path + ")";
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
    if (s.batch_size < 1 || s.epochs < 1 || s.dataset.rows() == 0 || !(s.validation_fraction >= 0 && s.validation_fraction < 1))
      continue;
    const auto n = s.dataset.rows();
    auto n_val = static_cast<std::size_t>(std::floor(static_cast<double>(n) * s.validation_fraction));
    if (s.validation_fraction > 0 && n_val == 0) n_val = 1;
    if (n_val >= n) continue;
    const auto batch = static_cast<std::size_t>(s.batch_size);
    total += static_cast<std::size_t>(s.epochs) * ((n - n_val + batch - 1) / batch);
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
  std::vector<std::string> notes;
  auto results = cuda ? detail::train_cuda(*cuda, cuda_ordinal, device, options.device_memory_limit, plans, on_epoch, on_progress, total, notes)
                      : run_cpu(plans, on_epoch, on_progress, total);
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
    t.adapter = Adapter(ds.cols(), static_cast<std::size_t>(spec.hidden), ds.classes(), std::move(results[i].params), ds.lineage().featurizer,
                        std::move(spec_json), lineage);
    t.history = std::move(results[i].history);
    t.lineage = std::move(lineage);
    t.device = device;
    t.notes = notes;
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

}  // namespace mlops
