// The kernels of the CUDA backend (included by module.cu only). Every elementwise kernel is a grid-stride
// loop, because blocks_for caps the grid at 2^20 blocks; reductions run in a fixed order (no atomics), so
// results repeat run after run on one GPU.
#pragma once

#include <algorithm>
#include <cfloat>

#include "trainer/cuda/abi.h"

namespace mlops_cuda {

// ---- Kernels --------------------------------------------------------------------------------------------

constexpr float kBeta1 = 0.9f, kBeta2 = 0.999f, kEps = 1e-8f;

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

// H = relu(H + b1) for every adapter's batch (H is S×Bm×h, b1 at params + a*P + b1_off).
__global__ void bias_relu(float* __restrict__ H, const float* __restrict__ params, long long P, long long b1_off,
                          int Bm, long long h, long long total) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long a = i / (Bm * h);
    const long long j = i % h;
    H[i] = fmaxf(H[i] + params[a * P + b1_off + j], 0.0f);
  }
}

// Per batch row: logits + bias -> softmax -> weighted cross-entropy (rowloss) and its gradient, written
// over the logits: G = w[y] * (p - onehot(y)) / rows. Padded rows get zeros.
__global__ void softmax_xent_grad(float* __restrict__ Z, const int* __restrict__ yb, const float* __restrict__ params,
                                  long long P, long long bias_off, const float* __restrict__ class_w,
                                  const int* __restrict__ counts, const int* step, int S, int Bm, int k,
                                  float* __restrict__ rowloss) {
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
      rowloss[i] = 0.0f;
      continue;
    }
    const float* b = params + a * P + bias_off;
    float mx = -FLT_MAX;
    for (int c = 0; c < k; ++c) {
      const float v = z[c] + b[c];
      z[c] = v;
      mx = fmaxf(mx, v);
    }
    float sum = 0.0f;
    for (int c = 0; c < k; ++c) {
      const float e = expf(z[c] - mx);
      z[c] = e;
      sum += e;
    }
    const float inv = 1.0f / sum;
    const float w = class_w[static_cast<long long>(a) * k + label];
    const float scale = w * (1.0f / static_cast<float>(cnt));
    rowloss[i] = w * -logf(fmaxf(z[label] * inv, FLT_MIN));
    for (int c = 0; c < k; ++c) z[c] = (z[c] * inv - (c == label ? 1.0f : 0.0f)) * scale;
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
__global__ void reduce_step(const float* __restrict__ G, const float* __restrict__ dH, const float* __restrict__ rowloss,
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
    const float* rl = rowloss + static_cast<long long>(a) * Bm;
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

// Validation rows: plain softmax cross-entropy and whether the argmax is right.
__global__ void eval_rows(const float* __restrict__ Z, const int* __restrict__ yb, const float* __restrict__ params,
                          long long P, long long bias_off, long long slots, int Bm, int k, float* __restrict__ rowloss,
                          int* __restrict__ rowok) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < slots;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int label = yb[i];
    if (label < 0) {
      rowloss[i] = 0.0f;
      rowok[i] = 0;
      continue;
    }
    const long long a = i / Bm;
    const float* z = Z + i * k;
    const float* b = params + a * P + bias_off;
    float mx = -FLT_MAX;
    int best = 0;
    for (int c = 0; c < k; ++c) {
      const float v = z[c] + b[c];
      if (v > mx) mx = v, best = c;
    }
    float sum = 0.0f;
    for (int c = 0; c < k; ++c) sum += expf(z[c] + b[c] - mx);
    const float p = expf(z[label] + b[label] - mx) / sum;
    rowloss[i] = -logf(fmaxf(p, FLT_MIN));
    rowok[i] = best == label ? 1 : 0;
  }
}

__global__ void reduce_eval(const float* __restrict__ rowloss, const int* __restrict__ rowok, int Bm,
                            double* __restrict__ val_loss, long long* __restrict__ val_ok) {
  if (threadIdx.x != 0) return;
  const int a = blockIdx.x;
  double s = 0.0;
  long long ok = 0;
  for (int r = 0; r < Bm; ++r) {
    s += rowloss[static_cast<long long>(a) * Bm + r];
    ok += rowok[static_cast<long long>(a) * Bm + r];
  }
  val_loss[a] += s;
  val_ok[a] += ok;
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
