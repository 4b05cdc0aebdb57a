// The GPU half of the trainer's promises, checked on a CUDA GPU (skipped where CudaTrainer("auto") finds
// none; tools/gpu-check.sh runs them, and a small fit under compute-sanitizer).
//   - GPU weights agree with the CPU's within 1e-4 (relative to max(1, |w|)) after 3 epochs, on mixed
//     shapes (softmax and MLP, several d/h/k, batch sizes and optimisers in one fit);
//   - the same fit twice gives bit-identical weights;
//   - an adapter alone equals the same adapter inside a batch, bit for bit, whatever its neighbours'
//     batch sizes, the sub-grouping, or whether they share its dataset;
//   - too little device memory is a DeviceError naming the sizes; an exception from a callback stops the
//     fit, is rethrown, and leaves the GPU usable.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "mlops/error.hpp"
#include "mlops/trainer.hpp"
#include "blobs.hpp"

using namespace mlops;
using test::blobs;

namespace {

bool no_gpu() {
  TrainerOptions o;
  o.device = "auto";
  o.progress = false;
  return CudaTrainer(o).device() == "cpu";
}

const bool kNoGpu = no_gpu();

TrainerOptions on(const std::string& device, std::uint64_t seed = 5) {
  TrainerOptions o;
  o.device = device;
  o.seed = seed;
  o.threads = 4;
  o.progress = false;
  return o;
}

AdapterSpec make(const std::string& name, Dataset ds, std::int64_t hidden, std::int64_t batch, Optimizer opt) {
  AdapterSpec s;
  s.name = name;
  s.dataset = std::move(ds);
  s.hidden = hidden;
  s.epochs = 3;
  s.batch_size = batch;
  s.learning_rate = opt == Optimizer::adam ? 0.01 : 0.1;
  s.optimizer = opt;
  s.validation_fraction = 0.2;
  return s;
}

// Mixed shapes: three (d, k) groups, softmax and MLP, batch sizes 16..300, Adam and SGD, class weights.
std::vector<AdapterSpec> mixed_specs() {
  std::vector<AdapterSpec> specs;
  for (int i = 0; i < 12; ++i) {
    const std::size_t d = i % 3 == 0 ? 16 : i % 3 == 1 ? 33 : 64;
    const std::size_t k = 2 + static_cast<std::size_t>(i % 4);
    const std::int64_t hidden = i % 2 ? 8 + 4 * (i % 3) : 0;
    const std::int64_t batch = std::vector<std::int64_t>{16, 32, 100, 300}[static_cast<std::size_t>(i % 4)];
    auto s = make("m" + std::to_string(i), blobs(300 + 37 * static_cast<std::size_t>(i), d, k, 100u + i), hidden, batch,
                  i % 5 == 4 ? Optimizer::sgd : Optimizer::adam);
    if (i % 6 == 1) s.class_weights.assign(k, 1.0), s.class_weights[0] = 2.0;
    specs.push_back(std::move(s));
  }
  return specs;
}

double worst_relative(const Adapter& a, const Adapter& b) {
  double worst = 0;
  for (const auto& name : a.tensor_names()) {
    const auto x = a.tensor(name), y = b.tensor(name);
    REQUIRE(x.size() == y.size());
    for (std::size_t i = 0; i < x.size(); ++i)
      worst = std::max(worst, std::abs(double(x[i]) - double(y[i])) / std::max(1.0, std::abs(double(y[i]))));
  }
  return worst;
}

bool identical(const Adapter& a, const Adapter& b) {
  for (const auto& name : a.tensor_names()) {
    const auto x = a.tensor(name), y = b.tensor(name);
    if (!std::equal(x.begin(), x.end(), y.begin(), y.end())) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("GPU: weights agree with the CPU within 1e-4 on mixed shapes, and repeat bit for bit" * doctest::skip(kNoGpu)) {
  const auto specs = mixed_specs();
  const auto g1 = CudaTrainer(on("cuda")).fit(specs);
  const auto g2 = CudaTrainer(on("cuda")).fit(specs);
  const auto c = CudaTrainer(on("cpu")).fit(specs);
  for (std::size_t i = 0; i < specs.size(); ++i) {
    INFO(specs[i].name, " d=", specs[i].dataset.cols(), " h=", specs[i].hidden, " batch=", specs[i].batch_size);
    CHECK(g1[i].device.rfind("cuda:", 0) == 0);
    CHECK(identical(g1[i].adapter, g2[i].adapter));
    CHECK(worst_relative(g1[i].adapter, c[i].adapter) <= 1e-4);
    REQUIRE(g1[i].history.epochs.size() == c[i].history.epochs.size());
    for (std::size_t e = 0; e < c[i].history.epochs.size(); ++e)
      CHECK(g1[i].history.epochs[e].val_loss ==
            doctest::Approx(c[i].history.epochs[e].val_loss).epsilon(1e-4));
    // Every shape's step was captured as a CUDA graph.
    CHECK(g1[i].notes.empty());
  }
}

TEST_CASE("GPU: an adapter alone equals the same adapter inside a batch" * doctest::skip(kNoGpu)) {
  auto alone = make("target", blobs(700, 48, 5, 42), 0, 64, Optimizer::adam);
  std::vector<AdapterSpec> batch;
  for (int i = 0; i < 40; ++i) batch.push_back(make("other" + std::to_string(i), blobs(500 + 11 * static_cast<std::size_t>(i), 48, 5, 7u + i), 0, 64, Optimizer::adam));
  batch.insert(batch.begin() + 17, alone);
  const auto a = CudaTrainer(on("cuda")).fit({alone});
  const auto b = CudaTrainer(on("cuda")).fit(batch);
  CHECK(identical(a[0].adapter, b[17].adapter));
  // Neighbours with larger batches pad the target's rows in every GEMM; padding adds nothing, not even
  // a rounding.
  std::vector<AdapterSpec> mixed = batch;
  for (std::size_t i = 0; i < mixed.size(); i += 3)
    if (mixed[i].name != "target") mixed[i].batch_size = 256;
  const auto m = CudaTrainer(on("cuda")).fit(mixed);
  CHECK(identical(m[17].adapter, a[0].adapter));
  // Neighbours on the target's own Dataset (one device copy for all of them) change nothing either.
  std::vector<AdapterSpec> sharing = {alone};
  for (int i = 0; i < 5; ++i) {
    auto s = alone;
    s.name = "sharer" + std::to_string(i);
    s.learning_rate = 0.001 * (i + 1);
    sharing.push_back(s);
  }
  const auto sh = CudaTrainer(on("cuda")).fit(sharing);
  CHECK(identical(sh[0].adapter, a[0].adapter));
}

TEST_CASE("GPU: too little device memory is a DeviceError naming the sizes, a group that fits in parts trains in sub-groups" *
          doctest::skip(kNoGpu)) {
  auto opts = on("cuda");
  opts.device_memory_limit = 300ull << 20;  // less than the tables and one adapter's 400 MB of data
  auto big = make("big", blobs(200'000, 512, 2, 3), 0, 256, Optimizer::adam);
  big.epochs = 1;
  try {
    (void)CudaTrainer(opts).fit({big});
    FAIL("no error");
  } catch (const DeviceError& e) {
    const std::string msg = e.what();
    CHECK(msg.find("out of device memory") != std::string::npos);
    CHECK(msg.find("200000 rows") != std::string::npos);
  }
  // Twelve adapters of ~16 MB each under a 200 MB limit: several sub-groups, the same bits as one group.
  std::vector<AdapterSpec> many;
  for (int i = 0; i < 12; ++i) many.push_back(make("p" + std::to_string(i), blobs(8000, 512, 3, 50u + i), 0, 128, Optimizer::adam));
  opts.device_memory_limit = 200ull << 20;
  const auto parts = CudaTrainer(opts).fit(many);
  const auto whole = CudaTrainer(on("cuda")).fit(many);
  CHECK_FALSE(parts[0].notes.empty());
  for (std::size_t i = 0; i < many.size(); ++i) CHECK(identical(parts[i].adapter, whole[i].adapter));
}

TEST_CASE("GPU: an exception from a callback stops the fit, is rethrown, and the GPU trains again" * doctest::skip(kNoGpu)) {
  std::vector<AdapterSpec> specs;
  for (int i = 0; i < 4; ++i) specs.push_back(make("c" + std::to_string(i), blobs(400, 20, 3, 9u + i), i % 2 ? 8 : 0, 32, Optimizer::adam));
  int calls = 0;
  CudaTrainer trainer(on("cuda"));
  CHECK_THROWS_WITH_AS(trainer.fit(specs, [&](const std::string&, int, const EpochMetrics&) {
    if (++calls == 3) throw std::runtime_error("stop here");
  }),
                       "stop here", std::runtime_error);
  CHECK(calls == 3);
  CHECK_THROWS_WITH_AS(trainer.fit(specs, {}, [](std::size_t done, std::size_t) {
    if (done > 10) throw std::logic_error("progress says stop");
  }),
                       "progress says stop", std::logic_error);
  const auto again = trainer.fit(specs);
  REQUIRE(again.size() == 4);
  CHECK(again[0].history.epochs.size() == 3);
}

TEST_CASE("GPU: a small fit for compute-sanitizer (softmax and MLP, early stopping, a partial batch)" *
          doctest::skip(kNoGpu)) {
  auto a = make("s", blobs(130, 12, 3, 1), 0, 32, Optimizer::adam);
  auto b = make("h", blobs(90, 12, 3, 2), 6, 20, Optimizer::sgd);
  a.epochs = b.epochs = 4;
  b.patience = 1;
  const auto r = CudaTrainer(on("cuda")).fit({a, b});
  CHECK(r.size() == 2);
  CHECK(r[0].history.epochs.size() == 4);
}
