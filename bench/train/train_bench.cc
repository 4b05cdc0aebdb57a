// The trainer's GPU figures without Python: many softmax adapters fitted at once on the device the trainer
// picks, its fixed cost (host work and upload) split from the time per epoch, side by side with the bytes
// of X one epoch reads. Built with the C++ tests (target mlops_train_bench); tools/gpu-check.sh runs it
// where the Python headers are missing.
//
//   mlops_train_bench [--device auto|cpu|cuda] [--adapters 1000] [--rows 2000] [--features 768]
//                     [--classes 8] [--epochs 10] [--batch 256] [--hidden 0]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "mlops/error.hpp"
#include "mlops/trainer.hpp"

namespace {

struct Args {
  std::string device = "auto";
  long adapters = 1000, rows = 2000, features = 768, classes = 8, epochs = 10, batch = 256, hidden = 0;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--device") a.device = v;
    else if (k == "--adapters") a.adapters = std::atol(v);
    else if (k == "--rows") a.rows = std::atol(v);
    else if (k == "--features") a.features = std::atol(v);
    else if (k == "--classes") a.classes = std::atol(v);
    else if (k == "--epochs") a.epochs = std::atol(v);
    else if (k == "--batch") a.batch = std::atol(v);
    else if (k == "--hidden") a.hidden = std::atol(v);
    else throw mlops::ConfigError("unknown option " + k);
  }
  return a;
}

// Class c of adapter i centred at its own random point; row r has class r % k.
mlops::Dataset blobs(const Args& a, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n01(0.0f, 1.0f);
  const auto rows = static_cast<std::size_t>(a.rows), d = static_cast<std::size_t>(a.features),
             k = static_cast<std::size_t>(a.classes);
  std::vector<float> centres(k * d);
  for (auto& c : centres) c = n01(rng);
  std::vector<float> X(rows * d);
  std::vector<std::int32_t> y(rows);
  for (std::size_t r = 0; r < rows; ++r) {
    y[r] = static_cast<std::int32_t>(r % k);
    for (std::size_t j = 0; j < d; ++j) X[r * d + j] = centres[(r % k) * d + j] + 0.5f * n01(rng);
  }
  std::vector<std::string> classes;
  for (std::size_t c = 0; c < k; ++c) classes.push_back("c" + std::to_string(c));
  return mlops::Dataset(std::move(X), rows, d, std::move(y), std::move(classes));
}

double seconds_of(mlops::CudaTrainer& trainer, std::vector<mlops::AdapterSpec>& specs, long epochs) {
  for (auto& s : specs) s.epochs = epochs;
  const auto t0 = std::chrono::steady_clock::now();
  (void)trainer.fit(specs);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    mlops::TrainerOptions o;
    o.device = a.device;
    o.progress = false;
    mlops::CudaTrainer trainer(o);
    std::vector<mlops::AdapterSpec> specs;
    for (long i = 0; i < a.adapters; ++i) {
      mlops::AdapterSpec s;
      s.name = "a" + std::to_string(i);
      s.dataset = blobs(a, static_cast<unsigned>(i + 1));
      s.hidden = a.hidden;
      s.batch_size = a.batch;
      s.validation_fraction = 0.1;
      specs.push_back(std::move(s));
    }
    std::printf("== train bench: %ld adapters x %ld rows x %ld features x %ld classes, hidden %ld, batch %ld, %ld epochs\n",
                a.adapters, a.rows, a.features, a.classes, a.hidden, a.batch, a.epochs);
    std::printf("device: %s (%s)\n", trainer.device().c_str(), trainer.device_reason().c_str());
    (void)seconds_of(trainer, specs, 1);  // warm-up: module load, context, first allocations
    const double one = seconds_of(trainer, specs, 1), all = seconds_of(trainer, specs, a.epochs);
    const double per_epoch = a.epochs > 1 ? (all - one) / static_cast<double>(a.epochs - 1) : one;
    const double x_bytes = static_cast<double>(a.adapters) * static_cast<double>(a.rows) * static_cast<double>(a.features) * 4.0;
    std::printf("fit(%ld epochs): %.3f s | fixed cost: %.3f s | per epoch: %.4f s | X read per epoch: %.1f MB (%.1f GB/s)\n",
                a.epochs, all, one - per_epoch, per_epoch, x_bytes / 1e6, per_epoch > 0 ? x_bytes / per_epoch / 1e9 : 0.0);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train bench: %s\n", e.what());
    return 1;
  }
}
