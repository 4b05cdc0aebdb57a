// 02: train several adapters at once, predict, save and load one.
// Python twin: examples/python/02_train.py
#include <cmath>
#include <filesystem>
#include <iostream>
#include <random>

#include <mlops/mlops.hpp>

// Two Gaussian blobs per customer, shifted differently for each: every adapter learns its own boundary.
mlops::Dataset customer_data(int customer, std::size_t rows, std::size_t cols) {
  std::mt19937 rng(static_cast<unsigned>(customer));
  std::normal_distribution<float> noise(0.0f, 1.0f);
  std::vector<float> X(rows * cols);
  std::vector<std::int32_t> y(rows);
  for (std::size_t i = 0; i < rows; ++i) {
    y[i] = static_cast<std::int32_t>(i % 2);
    for (std::size_t j = 0; j < cols; ++j)
      X[i * cols + j] = noise(rng) + (y[i] ? 1.5f : -1.5f) * (j == static_cast<std::size_t>(customer) % cols ? 1 : 0);
  }
  return mlops::Dataset(std::move(X), rows, cols, std::move(y), {"no", "yes"});
}

int main() {
  try {
    mlops::CudaTrainer trainer({.device = "auto", .seed = 0});
    std::cout << "device   " << trainer.device() << "\n";
    std::vector<mlops::AdapterSpec> specs;
    for (int c = 1; c <= 3; ++c) {
      mlops::AdapterSpec spec;
      spec.name = "customer-" + std::to_string(c);
      spec.dataset = customer_data(c, 400, 8);
      spec.epochs = 20;
      spec.batch_size = 32;
      spec.learning_rate = 0.05;
      specs.push_back(std::move(spec));
    }
    auto trained = trainer.fit(specs);
    for (const auto& t : trained)
      std::cout << t.name << "  val_accuracy " << t.history.epochs.back().val_accuracy << "\n";

    const auto path = std::filesystem::temp_directory_path() / "mlops-example-02.safetensors";
    trained[0].adapter.save(path);
    auto loaded = mlops::Adapter::load(path);
    const auto& X = specs[0].dataset.X();
    auto labels = loaded.predict(X.subspan(0, 4 * 8), 4);  // class labels, in the order of the rows
    std::cout << "loaded   " << path.filename().string() << ", first predictions:";
    for (const auto& label : labels) std::cout << " " << label;
    std::cout << "\n";
    std::filesystem::remove(path);
  } catch (const mlops::Error& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
  return 0;
}
