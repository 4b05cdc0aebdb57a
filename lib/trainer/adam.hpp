// Adam's constants and bias corrections, one definition for the CPU backend and the CUDA module (whose
// host side computes the corrections into its step tables), so both take the same steps.
#pragma once

#include <cmath>

namespace mlops::adam {

inline constexpr float kBeta1 = 0.9f, kBeta2 = 0.999f, kEps = 1e-8f;

/// 1 / (1 - beta^t) for optimiser step t (1-based), computed in double from the float beta the update
/// uses, then rounded to float.
inline float correction(float beta, long long t) {
  return static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(beta), static_cast<double>(t))));
}

}  // namespace mlops::adam
