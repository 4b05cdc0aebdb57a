// Test data for the trainer's tests: Gaussian blobs, class c centred at a random point.
#pragma once

#include <random>
#include <string>
#include <vector>

#include "mlops/dataset.hpp"

namespace mlops::test {

/// rows×d blobs of k classes (row i has class i % k); well separated when `spread` is small.
inline Dataset blobs(std::size_t rows, std::size_t d, std::size_t k, unsigned seed, float spread = 0.5f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n01(0.0f, 1.0f);
  std::vector<float> centres(k * d);
  for (auto& c : centres) c = n01(rng) * 2.0f;
  std::vector<float> X(rows * d);
  std::vector<std::int32_t> y(rows);
  for (std::size_t i = 0; i < rows; ++i) {
    y[i] = static_cast<std::int32_t>(i % k);
    for (std::size_t j = 0; j < d; ++j) X[i * d + j] = centres[static_cast<std::size_t>(y[i]) * d + j] + spread * n01(rng);
  }
  std::vector<std::string> classes;
  for (std::size_t c = 0; c < k; ++c) classes.push_back("c" + std::to_string(c));
  return Dataset(std::move(X), rows, d, std::move(y), std::move(classes));
}

}  // namespace mlops::test
