// CPU math of the adapters: OpenBLAS GEMMs (row-major) and the loops around them, written so the
// compiler vectorises them. Shared by training (cpu_backend.cc) and prediction (adapter.cc).
#pragma once

#include <cstddef>
#include <cstdint>

#include "trainer/plan.hpp"

namespace mlops::detail {

/// C[m×n] = A[m×k] · B[k×n] + beta·C (row-major).
void gemm_nn(std::size_t m, std::size_t n, std::size_t k, const float* A, const float* B, float beta, float* C);
/// C[m×n] = A[k×m]ᵀ · B[k×n] + beta·C.
void gemm_tn(std::size_t m, std::size_t n, std::size_t k, const float* A, const float* B, float beta, float* C);
/// C[m×n] = A[m×k] · B[n×k]ᵀ + beta·C.
void gemm_nt(std::size_t m, std::size_t n, std::size_t k, const float* A, const float* B, float beta, float* C);

/// Logits of `rows` rows: Z = X·W + b, or relu(X·W1 + b1)·W2 + b2 with the hidden activations in H
/// (rows×h; unused when h == 0).
void forward(const ParamLayout& L, const float* params, const float* X, std::size_t rows, float* H, float* Z);

/// Row-wise softmax of Z (rows×k) in place.
void softmax_rows(float* Z, std::size_t rows, std::size_t k);

/// Asks OpenBLAS (when it is the BLAS in use) to run each GEMM on one thread, because the trainer
/// already runs one adapter per thread. Harmless with another BLAS.
void blas_single_threaded();

}  // namespace mlops::detail
