// The kernels of the CUDA backend (included by module.cu only). Every elementwise kernel is a grid-stride
// loop, because blocks_for caps the grid at 2^20 blocks; reductions run in a fixed order (no atomics), so
// results repeat run after run on one GPU.
#pragma once

#include <algorithm>
#include <cfloat>

#include "trainer/adam.hpp"
#include "trainer/cuda/abi.h"
#include "trainer/cuda/gemm.hpp"

namespace mlops_cuda {

// ---- Kernels --------------------------------------------------------------------------------------------

using mlops::adam::kBeta1;
using mlops::adam::kBeta2;
using mlops::adam::kEps;
namespace cuda_gemm = mlops::cuda_gemm;

__device__ __forceinline__ int current_step(const int* step) { return step ? *step : 0; }

// Xb[i] = X[idx[i]] for the S*Bm batch slots of this step (zeros where idx < 0); yb likewise (-1).
__global__ void gather_rows(const float* __restrict__ X, const int* __restrict__ y, const int* __restrict__ idx,
                            const int* step, long long slots, long long d, float* __restrict__ Xb,
                            int* __restrict__ yb) {
  const long long base = static_cast<long long>(current_step(step)) * slots;
  for (long long i = blockIdx.x; i < slots; i += gridDim.x) {
    const int row = idx[base + i];
    float* dst = Xb + i * d;
    if (row < 0) {
      for (long long j = threadIdx.x; j < d; j += blockDim.x) dst[j] = 0.0f;
      if (threadIdx.x == 0) yb[i] = -1;
    } else {
      const float* src = X + static_cast<long long>(row) * d;
      for (long long j = threadIdx.x; j < d; j += blockDim.x) dst[j] = src[j];
      if (threadIdx.x == 0) yb[i] = y[row];
    }
  }
}

// One batched product of gemm.hpp: a thread block per (BM×BN tile, adapter), adapters beyond the grid's
// z extent in further rounds.
template <class T>
__global__ void __launch_bounds__(T::kThreads) batched_gemm(cuda_gemm::Problem p, cuda_gemm::Epilogue e) {
  __shared__ float As[T::kSharedA], Bs[T::kSharedB];
  const long long row0 = static_cast<long long>(blockIdx.y) * T::kBM, col0 = static_cast<long long>(blockIdx.x) * T::kBN;
  const int t = static_cast<int>(threadIdx.x);
  for (int b = static_cast<int>(blockIdx.z); b < p.batch; b += static_cast<int>(gridDim.z)) {
    typename T::Acc acc = {};
    for (long long k0 = 0; k0 < p.K; k0 += T::kBK) {
      T::load(p, b, row0, col0, k0, t, As, Bs);
      __syncthreads();
      T::accumulate(t, As, Bs, acc);
      __syncthreads();
    }
    T::store(p, b, row0, col0, t, acc, e);
  }
}

template <class T>
void launch_gemm(const cuda_gemm::Problem& p, cuda_gemm::Epilogue e, cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>((p.N + T::kBN - 1) / T::kBN), static_cast<unsigned>((p.M + T::kBM - 1) / T::kBM),
                  static_cast<unsigned>(std::min(p.batch, 65535)));
  batched_gemm<T><<<grid, T::kThreads, 0, s>>>(p, e);
}

// op(A)·op(B) for every adapter, with the tile shape that suits the product's width. Which tile runs
// changes only the speed: each element's sum is the same fma chain (gemm.hpp).
template <bool TA, bool TB>
void gemm(const cuda_gemm::Problem& p, cuda_gemm::Epilogue e, cudaStream_t s) {
  if (p.N <= 8) launch_gemm<cuda_gemm::NarrowTile<TA, TB>>(p, e, s);
  else if (p.N <= 16) launch_gemm<cuda_gemm::MidTile<TA, TB>>(p, e, s);
  else launch_gemm<cuda_gemm::WideTile<TA, TB>>(p, e, s);
}

// Per batch row: softmax of the logits (bias included) -> weighted cross-entropy (rowloss) and its
// gradient, written over the logits: G = w[y] * (p - onehot(y)) / rows. Padded rows get zeros. The
// arithmetic is the CPU backend's (cpu_math.cc softmax_rows, cpu_backend.cc step), operation by operation.
__global__ void softmax_xent_grad(float* __restrict__ Z, const int* __restrict__ yb, const float* __restrict__ class_w,
                                  const int* __restrict__ counts, const int* step, int S, int Bm, int k,
                                  double* __restrict__ rowloss) {
  // Grid-stride: the grid is capped (blocks_for), the rows are not.
  const long long total = static_cast<long long>(S) * Bm;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int a = static_cast<int>(i / Bm);
    const int r = static_cast<int>(i % Bm);
    const int cnt = counts[static_cast<long long>(current_step(step)) * S + a];
    float* z = Z + i * k;
    const int label = yb[i];
    if (r >= cnt || label < 0) {
      for (int c = 0; c < k; ++c) z[c] = 0.0f;
      rowloss[i] = 0.0;
      continue;
    }
    float mx = z[0];
    for (int c = 1; c < k; ++c) mx = z[c] > mx ? z[c] : mx;
    float sum = 0.0f;
    for (int c = 0; c < k; ++c) {
      const float e = expf(z[c] - mx);
      z[c] = e;
      sum += e;
    }
    const float inv = 1.0f / sum;
    for (int c = 0; c < k; ++c) z[c] *= inv;
    const float w = class_w[static_cast<long long>(a) * k + label];
    rowloss[i] = static_cast<double>(w) * -static_cast<double>(logf(fmaxf(z[label], FLT_MIN)));
    const float scale = w * (1.0f / static_cast<float>(cnt));
    z[label] -= 1.0f;
    for (int c = 0; c < k; ++c) z[c] *= scale;
  }
}

// dH = dH where H > 0, else 0.
__global__ void relu_mask(float* __restrict__ dH, const float* __restrict__ H, long long total) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x)
    if (H[i] <= 0.0f) dH[i] = 0.0f;
}

// One block per adapter: bias gradients (column sums of G and, for the MLP, of dH) in a fixed row order,
// and the step's summed loss added to the adapter's epoch total.
__global__ void reduce_step(const float* __restrict__ G, const float* __restrict__ dH, const double* __restrict__ rowloss,
                            float* __restrict__ grad, long long P, long long b_off, long long b1_off, int Bm, int k,
                            int h, const int* __restrict__ counts, const int* step, int S, double* __restrict__ epoch_loss) {
  const int a = blockIdx.x;
  const float* g = G + static_cast<long long>(a) * Bm * k;
  for (int c = threadIdx.x; c < k; c += blockDim.x) {
    float s = 0.0f;
    for (int r = 0; r < Bm; ++r) s += g[static_cast<long long>(r) * k + c];
    grad[a * P + b_off + c] = s;
  }
  if (h > 0) {
    const float* dh = dH + static_cast<long long>(a) * Bm * h;
    for (int j = threadIdx.x; j < h; j += blockDim.x) {
      float s = 0.0f;
      for (int r = 0; r < Bm; ++r) s += dh[static_cast<long long>(r) * h + j];
      grad[a * P + b1_off + j] = s;
    }
  }
  if (threadIdx.x == 0 && counts[static_cast<long long>(current_step(step)) * S + a] > 0) {
    double s = 0.0;
    const double* rl = rowloss + static_cast<long long>(a) * Bm;
    for (int r = 0; r < Bm; ++r) s += rl[r];
    epoch_loss[a] += s;
  }
}

struct UpdateArgs {
  float* params;
  const float* grad;
  float* m;
  float* v;
  const float* lr;
  const float* l2;
  const float* momentum;
  const int* optimizer;
  const int* counts;
  const float2* corrections;  // per (step, adapter): Adam's 1/(1-beta1^t), 1/(1-beta2^t)
  const int* step;
  long long P, d, h, k;
  int S;
};

__device__ __forceinline__ bool is_bias(long long j, long long d, long long h, long long k) {
  if (h == 0) return j >= d * k;
  return (j >= d * h && j < d * h + h) || j >= d * h + h + h * k;
}

// The optimiser step of every parameter of every adapter that has rows in this step.
__global__ void update_params(UpdateArgs u) {
  const long long total = u.P * u.S;
  const int st = current_step(u.step);
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int a = static_cast<int>(i / u.P);
    const long long at = static_cast<long long>(st) * u.S + a;
    if (u.counts[at] == 0) continue;
    const long long j = i % u.P;
    float g = u.grad[i];
    const float p = u.params[i];
    if (!is_bias(j, u.d, u.h, u.k)) g += u.l2[a] * p;
    if (u.optimizer[a] == MLOPS_CUDA_OPT_ADAM) {
      const float2 c = u.corrections[at];
      const float m = kBeta1 * u.m[i] + (1.0f - kBeta1) * g;
      const float v = kBeta2 * u.v[i] + (1.0f - kBeta2) * g * g;
      u.m[i] = m;
      u.v[i] = v;
      u.params[i] = p - u.lr[a] * (m * c.x) / (sqrtf(v * c.y) + kEps);
    } else {
      const float m = u.momentum[a] * u.m[i] + g;
      u.m[i] = m;
      u.params[i] = p - u.lr[a] * m;
    }
  }
}

__global__ void advance(int* step) { *step += 1; }

// The slots of one validation slice: adapter a's rows [begin, begin + Bm) of its validation rows (already
// offset into the device's data), -1 past its last; adapters not in `which` (0/1 per adapter) get none.
__global__ void validation_slice(const int* __restrict__ val_rows, const long long* __restrict__ val_off,
                                 const long long* __restrict__ n_val, const int* __restrict__ which, long long begin,
                                 int S, int Bm, int* __restrict__ idx) {
  const long long slots = static_cast<long long>(S) * Bm;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < slots;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int a = static_cast<int>(i / Bm);
    const long long r = begin + i % Bm;
    idx[i] = which[a] && r < n_val[a] ? val_rows[val_off[a] + r] : -1;
  }
}

// Validation rows: plain softmax cross-entropy, clamped at 1e-38 in double, and whether the most probable
// class is right (the first of equals), as the CPU's evaluate_cpu.
__global__ void eval_rows(const float* __restrict__ Z, const int* __restrict__ yb, long long slots, int k,
                          double* __restrict__ rowloss, int* __restrict__ rowok) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < slots;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int label = yb[i];
    if (label < 0) {
      rowloss[i] = 0.0;
      rowok[i] = 0;
      continue;
    }
    const float* z = Z + i * k;
    float mx = z[0];
    for (int c = 1; c < k; ++c) mx = z[c] > mx ? z[c] : mx;
    float sum = 0.0f;
    for (int c = 0; c < k; ++c) sum += expf(z[c] - mx);
    const float inv = 1.0f / sum;
    int best = 0;
    float best_p = expf(z[0] - mx) * inv, p_label = best_p;
    for (int c = 1; c < k; ++c) {
      const float p = expf(z[c] - mx) * inv;
      if (p > best_p) best_p = p, best = c;
      if (c == label) p_label = p;
    }
    rowloss[i] = -log(fmax(static_cast<double>(p_label), 1e-38));
    rowok[i] = best == label ? 1 : 0;
  }
}

// Each adapter's validation sums, one row after the other in row order (padding adds 0): the same
// sequence of additions whatever the slice length, as the CPU's loop over its validation rows.
__global__ void reduce_eval(const double* __restrict__ rowloss, const int* __restrict__ rowok, int Bm,
                            double* __restrict__ val_loss, long long* __restrict__ val_ok) {
  if (threadIdx.x != 0) return;
  const int a = blockIdx.x;
  double s = val_loss[a];
  long long ok = val_ok[a];
  for (int r = 0; r < Bm; ++r) {
    s += rowloss[static_cast<long long>(a) * Bm + r];
    ok += rowok[static_cast<long long>(a) * Bm + r];
  }
  val_loss[a] = s;
  val_ok[a] = ok;
}

// Squared norm of each adapter's weights (biases excluded): fixed-order tree reduction per block.
__global__ void weight_norms(const float* __restrict__ params, long long P, long long d, long long h, long long k,
                             double* __restrict__ out) {
  __shared__ double part[256];
  const int a = blockIdx.x;
  double s = 0.0;
  for (long long j = threadIdx.x; j < P; j += blockDim.x)
    if (!is_bias(j, d, h, k)) {
      const double w = params[a * P + j];
      s += w * w;
    }
  part[threadIdx.x] = s;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) part[threadIdx.x] += part[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[a] = part[0];
}

inline int blocks_for(long long n, int threads) {
  return static_cast<int>(std::max<long long>(1, std::min<long long>((n + threads - 1) / threads, 1 << 20)));
}

}  // namespace mlops_cuda
