#include "trainer/cpu_math.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cmath>

#include <cblas.h>

namespace mlops::detail {

namespace {
blasint I(std::size_t v) { return static_cast<blasint>(v); }
}  // namespace

void gemm_nn(std::size_t m, std::size_t n, std::size_t k, const float* A, const float* B, float beta, float* C) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, I(m), I(n), I(k), 1.0f, A, I(k), B, I(n), beta, C, I(n));
}

void gemm_tn(std::size_t m, std::size_t n, std::size_t k, const float* A, const float* B, float beta, float* C) {
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, I(m), I(n), I(k), 1.0f, A, I(m), B, I(n), beta, C, I(n));
}

void gemm_nt(std::size_t m, std::size_t n, std::size_t k, const float* A, const float* B, float beta, float* C) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, I(m), I(n), I(k), 1.0f, A, I(k), B, I(k), beta, C, I(n));
}

void forward(const ParamLayout& L, const float* params, const float* X, std::size_t rows, float* H, float* Z) {
  if (L.h == 0) {
    const float* b = params + L.b1();
    for (std::size_t r = 0; r < rows; ++r) std::copy(b, b + L.k, Z + r * L.k);
    gemm_nn(rows, L.k, L.d, X, params + L.w1(), 1.0f, Z);
    return;
  }
  const float* b1 = params + L.b1();
  for (std::size_t r = 0; r < rows; ++r) std::copy(b1, b1 + L.h, H + r * L.h);
  gemm_nn(rows, L.h, L.d, X, params + L.w1(), 1.0f, H);
  for (std::size_t i = 0; i < rows * L.h; ++i) H[i] = std::max(H[i], 0.0f);
  const float* b2 = params + L.b2();
  for (std::size_t r = 0; r < rows; ++r) std::copy(b2, b2 + L.k, Z + r * L.k);
  gemm_nn(rows, L.k, L.h, H, params + L.w2(), 1.0f, Z);
}

void softmax_rows(float* Z, std::size_t rows, std::size_t k) {
  for (std::size_t r = 0; r < rows; ++r) {
    float* z = Z + r * k;
    const float mx = *std::max_element(z, z + k);
    float sum = 0;
    for (std::size_t c = 0; c < k; ++c) {
      z[c] = std::exp(z[c] - mx);
      sum += z[c];
    }
    const float inv = 1.0f / sum;
    for (std::size_t c = 0; c < k; ++c) z[c] *= inv;
  }
}

void blas_single_threaded() {
  using SetThreads = void (*)(int);
  static const SetThreads set = [] {
    void* sym = dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
    if (!sym) {
      // Inside a module loaded with RTLD_LOCAL (the Python extension) the BLAS is not in the global
      // scope: look in the library that provides the cblas_sgemm this code calls.
      Dl_info info{};
      if (dladdr(reinterpret_cast<void*>(&cblas_sgemm), &info) != 0 && info.dli_fname) {
        if (void* lib = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD)) {
          sym = dlsym(lib, "openblas_set_num_threads");
          dlclose(lib);  // drops the reference RTLD_NOLOAD added; the library stays loaded
        }
      }
    }
    return reinterpret_cast<SetThreads>(sym);
  }();
  if (set) set(1);
}

}  // namespace mlops::detail
