// The CUDA backend of the trainer, built as libmlops_cuda.so and loaded by libmlops with dlopen (see abi.h).
//
// One call trains a group of adapters of one shape (d, h, k). All of their data is copied to the device
// once (in sub-groups when it does not fit: each sub-group's data stays resident while it trains). A
// training step of all adapters together is a fixed sequence of launches, captured once as a CUDA graph:
//   gather each adapter's mini-batch rows -> strided-batched GEMM(s) forward -> fused bias + softmax +
//   cross-entropy + gradient -> strided-batched GEMMs backward -> per-adapter bias-gradient and loss
//   reduction -> fused optimiser update of every parameter of every adapter -> step counter + 1.
// What changes from step to step (which rows, how many, Adam's bias corrections) lives in device tables
// the kernels index with the step counter, so the same graph replays every step. Adapters with fewer rows
// in a step (a last partial batch, a smaller batch size, a finished adapter) are padded with zero rows that
// contribute nothing. No kernel uses atomics: every reduction has a fixed order, so results repeat run
// after run on one GPU.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "trainer/cuda/abi.h"

namespace {

// ---- Errors -------------------------------------------------------------------------------------------

struct Failure : std::runtime_error {
  int code;
  Failure(int c, const std::string& m) : std::runtime_error(m), code(c) {}
};

void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // clear a sticky launch error so the message is about this call
  throw Failure(e == cudaErrorMemoryAllocation ? MLOPS_CUDA_ERR_OOM : MLOPS_CUDA_ERR_DEVICE,
                std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

void check_blas(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  throw Failure(s == CUBLAS_STATUS_ALLOC_FAILED ? MLOPS_CUDA_ERR_OOM : MLOPS_CUDA_ERR_DEVICE,
                std::string(what) + ": cuBLAS status " + std::to_string(static_cast<int>(s)));
}

std::string mib(double bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024.0));
  return buf;
}

void write_message(char* out, size_t size, const std::string& m) {
  if (!out || size == 0) return;
  const size_t n = std::min(size - 1, m.size());
  std::memcpy(out, m.data(), n);
  out[n] = '\0';
}

// ---- RAII handles -------------------------------------------------------------------------------------

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(size_t count, const char* what) { allocate(count, what); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void allocate(size_t count, const char* what) {
    release();
    count_ = count;
    if (count == 0) return;
    const cudaError_t e = cudaMalloc(reinterpret_cast<void**>(&ptr_), count * sizeof(T));
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      throw Failure(e == cudaErrorMemoryAllocation ? MLOPS_CUDA_ERR_OOM : MLOPS_CUDA_ERR_DEVICE,
                    std::string("allocating ") + what + " (" + mib(double(count) * sizeof(T)) + ") failed: " +
                        cudaGetErrorString(e) + "; device has " + mib(double(free_b)) + " free of " +
                        mib(double(total_b)));
    }
  }
  void release() {
    if (ptr_) cudaFree(ptr_);
    ptr_ = nullptr;
    count_ = 0;
  }
  T* get() const { return ptr_; }
  size_t size() const { return count_; }

 private:
  T* ptr_ = nullptr;
  size_t count_ = 0;
};

template <typename T>
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer() {
    if (ptr_) cudaFreeHost(ptr_);
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  void allocate(size_t count, const char* what) {
    if (ptr_) cudaFreeHost(ptr_);
    ptr_ = nullptr;
    if (count) check(cudaMallocHost(reinterpret_cast<void**>(&ptr_), count * sizeof(T)), what);
    count_ = count;
  }
  T* get() const { return ptr_; }
  T& operator[](size_t i) const { return ptr_[i]; }

 private:
  T* ptr_ = nullptr;
  size_t count_ = 0;
};

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate"); }
  ~Stream() {
    if (s) cudaStreamDestroy(s);
  }
};

struct Blas {
  cublasHandle_t h = nullptr;
  Blas() { check_blas(cublasCreate(&h), "cublasCreate"); }
  ~Blas() {
    if (h) cublasDestroy(h);
  }
};

struct Graph {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ~Graph() {
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
  }
};

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
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= static_cast<long long>(S) * Bm) return;
  const int a = static_cast<int>(i / Bm);
  const int r = static_cast<int>(i % Bm);
  const int cnt = counts[static_cast<long long>(current_step(step)) * S + a];
  float* z = Z + i * k;
  const int label = yb[i];
  if (r >= cnt || label < 0) {
    for (int c = 0; c < k; ++c) z[c] = 0.0f;
    rowloss[i] = 0.0f;
    return;
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
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= slots) return;
  const int label = yb[i];
  if (label < 0) {
    rowloss[i] = 0.0f;
    rowok[i] = 0;
    return;
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

int blocks_for(long long n, int threads) {
  return static_cast<int>(std::max<long long>(1, std::min<long long>((n + threads - 1) / threads, 1 << 20)));
}

// Runs fn(i) for i in [0, n) on up to 8 host threads (one when n is small); rethrows the first exception.
template <typename Fn>
void parallel_for(int n, Fn&& fn) {
  const int threads = n < 64 ? 1 : static_cast<int>(std::min(8u, std::max(1u, std::thread::hardware_concurrency())));
  if (threads <= 1) {
    for (int i = 0; i < n; ++i) fn(i);
    return;
  }
  std::vector<std::exception_ptr> errors(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      try {
        for (int i = t; i < n; i += threads) fn(i);
      } catch (...) {
        errors[t] = std::current_exception();
      }
    });
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

// ---- Training of one sub-group ------------------------------------------------------------------------

struct Sizes {
  long long d, h, k, P;
};

class SubGroup {
 public:
  SubGroup(const MlopsCudaJob& job, std::vector<int> members, int Bm, int max_chunk)
      : job_(job), idx_(std::move(members)), S_(static_cast<int>(idx_.size())), Bm_(Bm), Cmax_(max_chunk) {
    z_ = {job.d, job.h, job.k, job.h == 0 ? job.d * job.k + job.k : job.d * job.h + job.h + job.h * job.k + job.k};
  }

  void run(Stream& stream, Blas& blas) {
    cudaStream_t s = stream.s;
    const auto& A = job_.adapters;
    const long long d = z_.d, h = z_.h, k = z_.k, P = z_.P;
    const long long slots = static_cast<long long>(S_) * Bm_;

    // Data of every adapter, resident for the whole sub-group.
    std::vector<long long> row_off(S_);
    long long total_rows = 0;
    for (int a = 0; a < S_; ++a) row_off[a] = total_rows, total_rows += A[idx_[a]].rows;
    DeviceBuffer<float> X(static_cast<size_t>(total_rows * d), "the training data X");
    DeviceBuffer<int> y(static_cast<size_t>(total_rows), "the labels y");
    for (int a = 0; a < S_; ++a) {
      const auto& ad = A[idx_[a]];
      check(cudaMemcpyAsync(X.get() + row_off[a] * d, ad.X, sizeof(float) * ad.rows * d, cudaMemcpyHostToDevice, s),
            "copying X to the device");
      check(cudaMemcpyAsync(y.get() + row_off[a], ad.y, sizeof(int) * ad.rows, cudaMemcpyHostToDevice, s),
            "copying y to the device");
    }

    // Parameters, optimiser state, per-adapter settings.
    DeviceBuffer<float> params(S_ * P, "parameters"), grad(S_ * P, "gradients"), m(S_ * P, "optimiser state"),
        v(S_ * P, "optimiser state"), kept(S_ * P, "best weights");
    std::vector<float> host(S_ * P);
    std::vector<float> lr(S_), l2(S_), mom(S_), cw(S_ * k);
    std::vector<int> opt(S_);
    for (int a = 0; a < S_; ++a) {
      const auto& ad = A[idx_[a]];
      std::copy(ad.init_params, ad.init_params + P, host.begin() + a * P);
      std::copy(ad.class_weights, ad.class_weights + k, cw.begin() + a * k);
      lr[a] = ad.learning_rate, l2[a] = ad.l2, mom[a] = ad.momentum, opt[a] = ad.optimizer;
    }
    check(cudaMemcpyAsync(params.get(), host.data(), sizeof(float) * host.size(), cudaMemcpyHostToDevice, s), "upload");
    check(cudaMemsetAsync(m.get(), 0, sizeof(float) * S_ * P, s), "memset");
    check(cudaMemsetAsync(v.get(), 0, sizeof(float) * S_ * P, s), "memset");
    DeviceBuffer<float> d_lr(S_, "settings"), d_l2(S_, "settings"), d_mom(S_, "settings"), d_cw(S_ * k, "class weights");
    DeviceBuffer<int> d_opt(S_, "settings");
    check(cudaMemcpyAsync(d_lr.get(), lr.data(), sizeof(float) * S_, cudaMemcpyHostToDevice, s), "upload");
    check(cudaMemcpyAsync(d_l2.get(), l2.data(), sizeof(float) * S_, cudaMemcpyHostToDevice, s), "upload");
    check(cudaMemcpyAsync(d_mom.get(), mom.data(), sizeof(float) * S_, cudaMemcpyHostToDevice, s), "upload");
    check(cudaMemcpyAsync(d_cw.get(), cw.data(), sizeof(float) * S_ * k, cudaMemcpyHostToDevice, s), "upload");
    check(cudaMemcpyAsync(d_opt.get(), opt.data(), sizeof(int) * S_, cudaMemcpyHostToDevice, s), "upload");

    // Per-step workspace.
    DeviceBuffer<float> Xb(slots * d, "the mini-batch buffer"), Z(slots * k, "logits"), H(slots * h, "hidden"),
        dH(slots * h, "hidden gradients"), rowloss(slots, "row losses");
    DeviceBuffer<int> yb(slots, "batch labels"), rowok(slots, "row results");
    DeviceBuffer<int> d_idx(static_cast<size_t>(Cmax_) * slots, "step tables"), d_cnt(static_cast<size_t>(Cmax_) * S_, "step tables");
    DeviceBuffer<float2> d_corr(static_cast<size_t>(Cmax_) * S_, "step tables");
    DeviceBuffer<int> d_step(1, "step counter"), d_zero(1, "step counter");
    DeviceBuffer<double> d_epoch_loss(S_, "metrics"), d_val_loss(S_, "metrics"), d_wn2(S_, "metrics");
    DeviceBuffer<long long> d_val_ok(S_, "metrics");
    check(cudaMemsetAsync(d_epoch_loss.get(), 0, sizeof(double) * S_, s), "memset");
    check(cudaMemsetAsync(d_zero.get(), 0, sizeof(int), s), "memset");
    PinnedBuffer<int> h_idx, h_cnt;
    PinnedBuffer<float2> h_corr;
    h_idx.allocate(static_cast<size_t>(Cmax_) * slots, "pinned step tables");
    h_cnt.allocate(static_cast<size_t>(Cmax_) * S_, "pinned step tables");
    h_corr.allocate(static_cast<size_t>(Cmax_) * S_, "pinned step tables");

    const long long b_off = h == 0 ? d * k : d * h + h + h * k;  // b or b2
    const long long b1_off = d * h, w2_off = d * h + h;
    const float one = 1.0f, zero = 0.0f;
    auto gemm = [&](cublasOperation_t ta, cublasOperation_t tb, long long mm, long long nn, long long kk, const float* Am,
                    long long lda, long long sa, const float* Bmat, long long ldb, long long sb, float* C, long long ldc,
                    long long sc, const char* what) {
      check_blas(cublasSgemmStridedBatched(blas.h, ta, tb, static_cast<int>(mm), static_cast<int>(nn), static_cast<int>(kk),
                                           &one, Am, static_cast<int>(lda), sa, Bmat, static_cast<int>(ldb), sb, &zero, C,
                                           static_cast<int>(ldc), sc, S_),
                 what);
    };
    // Row-major buffers seen by column-major cuBLAS as their transposes (see the layout notes in abi.h).
    auto forward = [&](const int* step) {
      gather_rows<<<blocks_for(slots, 1), 128, 0, s>>>(X.get(), y.get(), d_idx.get(), step, slots, d, Xb.get(), yb.get());
      if (h == 0) {
        gemm(CUBLAS_OP_N, CUBLAS_OP_N, k, Bm_, d, params.get(), k, P, Xb.get(), d, Bm_ * d, Z.get(), k, Bm_ * k, "forward GEMM");
      } else {
        gemm(CUBLAS_OP_N, CUBLAS_OP_N, h, Bm_, d, params.get(), h, P, Xb.get(), d, Bm_ * d, H.get(), h, Bm_ * h, "forward GEMM 1");
        bias_relu<<<blocks_for(slots * h, 256), 256, 0, s>>>(H.get(), params.get(), P, b1_off, Bm_, h, slots * h);
        gemm(CUBLAS_OP_N, CUBLAS_OP_N, k, Bm_, h, params.get() + w2_off, k, P, H.get(), h, Bm_ * h, Z.get(), k, Bm_ * k,
             "forward GEMM 2");
      }
    };
    auto train_step = [&]() {
      const int* step = d_step.get();
      forward(step);
      softmax_xent_grad<<<blocks_for(slots, 128), 128, 0, s>>>(Z.get(), yb.get(), params.get(), P, b_off, d_cw.get(),
                                                              d_cnt.get(), step, S_, Bm_, static_cast<int>(k), rowloss.get());
      if (h == 0) {
        gemm(CUBLAS_OP_N, CUBLAS_OP_T, k, d, Bm_, Z.get(), k, Bm_ * k, Xb.get(), d, Bm_ * d, grad.get(), k, P, "weight-gradient GEMM");
      } else {
        gemm(CUBLAS_OP_N, CUBLAS_OP_T, k, h, Bm_, Z.get(), k, Bm_ * k, H.get(), h, Bm_ * h, grad.get() + w2_off, k, P,
             "W2-gradient GEMM");
        gemm(CUBLAS_OP_T, CUBLAS_OP_N, h, Bm_, k, params.get() + w2_off, k, P, Z.get(), k, Bm_ * k, dH.get(), h, Bm_ * h,
             "hidden-gradient GEMM");
        relu_mask<<<blocks_for(slots * h, 256), 256, 0, s>>>(dH.get(), H.get(), slots * h);
        gemm(CUBLAS_OP_N, CUBLAS_OP_T, h, d, Bm_, dH.get(), h, Bm_ * h, Xb.get(), d, Bm_ * d, grad.get(), h, P,
             "W1-gradient GEMM");
      }
      reduce_step<<<S_, 64, 0, s>>>(Z.get(), dH.get(), rowloss.get(), grad.get(), P, b_off, b1_off, Bm_,
                                    static_cast<int>(k), static_cast<int>(h), d_cnt.get(), step, S_, d_epoch_loss.get());
      UpdateArgs u{params.get(), grad.get(), m.get(), v.get(), d_lr.get(), d_l2.get(), d_mom.get(), d_opt.get(),
                   d_cnt.get(), d_corr.get(), step, P, d, h, k, S_};
      update_params<<<blocks_for(P * S_, 256), 256, 0, s>>>(u);
      advance<<<1, 1, 0, s>>>(d_step.get());
    };

    // Capture one step as a graph; where capture is not possible the same launches run directly.
    Graph graph;
    bool use_graph = false;
    if (cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess) {
      bool captured = true;
      try {
        train_step();
      } catch (const Failure&) {
        captured = false;
      }
      const cudaError_t end = cudaStreamEndCapture(s, &graph.graph);
      if (captured && end == cudaSuccess && cudaGraphInstantiate(&graph.exec, graph.graph, 0) == cudaSuccess)
        use_graph = true;
      cudaGetLastError();
    }

    // Host-side schedule of every adapter.
    struct State {
      long long spe = 0;       // steps per epoch
      int epoch = 0;           // epochs finished
      long long t = 0;         // optimiser steps taken
      bool active = true;
      bool kept = false;
      std::vector<uint32_t> order;
    };
    std::vector<State> st(S_);
    for (int a = 0; a < S_; ++a) {
      const auto& ad = A[idx_[a]];
      st[a].spe = (ad.n_train + ad.batch_size - 1) / ad.batch_size;
      st[a].order.resize(static_cast<size_t>(ad.n_train));
    }
    long long g = 0;  // global step of this sub-group
    std::vector<double> epoch_loss(S_), val_loss(S_), wn2(S_);
    std::vector<long long> val_ok(S_);
    std::vector<int> at_boundary;
    for (;;) {
      long long chunk = -1;
      for (int a = 0; a < S_; ++a)
        if (st[a].active) {
          const long long left = st[a].spe - g % st[a].spe;
          chunk = chunk < 0 ? left : std::min(chunk, left);
        }
      if (chunk < 0) break;
      // Fill the step tables of this chunk: each adapter's part is independent, so large groups are
      // filled by several host threads (epoch_order is a pure function of adapter and epoch).
      long long steps_done = 0;
      for (int a = 0; a < S_; ++a) steps_done += st[a].active ? chunk : 0;
      auto fill = [&](int a) {
        const auto& ad = A[idx_[a]];
        if (st[a].active && g % st[a].spe == 0)
          job_.callbacks.epoch_order(job_.callbacks.ctx, idx_[a], st[a].epoch + 1, st[a].order.data());
        for (long long c = 0; c < chunk; ++c) {
          int* idx = h_idx.get() + (c * S_ + a) * Bm_;
          int cnt = 0;
          if (st[a].active) {
            const long long begin = ((g + c) % st[a].spe) * ad.batch_size;
            cnt = static_cast<int>(std::min<long long>(ad.batch_size, ad.n_train - begin));
            for (int r = 0; r < cnt; ++r) idx[r] = static_cast<int>(row_off[a] + st[a].order[begin + r]);
            st[a].t += 1;
            h_corr[c * S_ + a] = make_float2(static_cast<float>(1.0 / (1.0 - std::pow(double(kBeta1), double(st[a].t)))),
                                             static_cast<float>(1.0 / (1.0 - std::pow(double(kBeta2), double(st[a].t)))));
          } else {
            h_corr[c * S_ + a] = make_float2(1.0f, 1.0f);
          }
          for (int r = cnt; r < Bm_; ++r) idx[r] = -1;
          h_cnt[c * S_ + a] = cnt;
        }
      };
      parallel_for(S_, fill);
      check(cudaMemcpyAsync(d_idx.get(), h_idx.get(), sizeof(int) * chunk * slots, cudaMemcpyHostToDevice, s), "upload tables");
      check(cudaMemcpyAsync(d_cnt.get(), h_cnt.get(), sizeof(int) * chunk * S_, cudaMemcpyHostToDevice, s), "upload tables");
      check(cudaMemcpyAsync(d_corr.get(), h_corr.get(), sizeof(float2) * chunk * S_, cudaMemcpyHostToDevice, s),
            "upload tables");
      check(cudaMemsetAsync(d_step.get(), 0, sizeof(int), s), "memset");
      for (long long c = 0; c < chunk; ++c) {
        if (use_graph) check(cudaGraphLaunch(graph.exec, s), "cudaGraphLaunch");
        else train_step();
      }
      check(cudaGetLastError(), "a training kernel launch");
      g += chunk;

      at_boundary.clear();
      for (int a = 0; a < S_; ++a)
        if (st[a].active && g % st[a].spe == 0) at_boundary.push_back(a);
      if (!at_boundary.empty()) evaluate(s, at_boundary, X, y, Xb, yb, Z, H, rowloss, rowok, d_idx, d_val_loss, d_val_ok,
                                         d_wn2, params, row_off, forward, b_off);
      check(cudaStreamSynchronize(s), "training");
      if (job_.callbacks.on_steps && job_.callbacks.on_steps(job_.callbacks.ctx, steps_done) != 0)
        throw Failure(MLOPS_CUDA_ERR_CANCELLED, "cancelled");
      if (at_boundary.empty()) continue;

      check(cudaMemcpy(epoch_loss.data(), d_epoch_loss.get(), sizeof(double) * S_, cudaMemcpyDeviceToHost), "download");
      check(cudaMemcpy(val_loss.data(), d_val_loss.get(), sizeof(double) * S_, cudaMemcpyDeviceToHost), "download");
      check(cudaMemcpy(val_ok.data(), d_val_ok.get(), sizeof(long long) * S_, cudaMemcpyDeviceToHost), "download");
      check(cudaMemcpy(wn2.data(), d_wn2.get(), sizeof(double) * S_, cudaMemcpyDeviceToHost), "download");
      for (int a : at_boundary) {
        st[a].epoch += 1;
        const int32_t flags = job_.callbacks.on_epoch(job_.callbacks.ctx, idx_[a], st[a].epoch, epoch_loss[a], wn2[a],
                                                      val_loss[a], val_ok[a]);
        epoch_loss[a] = 0.0;
        if (flags & MLOPS_CUDA_CANCEL) throw Failure(MLOPS_CUDA_ERR_CANCELLED, "cancelled");
        if (flags & MLOPS_CUDA_KEEP) {
          check(cudaMemcpyAsync(kept.get() + a * P, params.get() + a * P, sizeof(float) * P, cudaMemcpyDeviceToDevice, s),
                "keeping the best weights");
          st[a].kept = true;
        }
        if ((flags & MLOPS_CUDA_STOP) || st[a].epoch >= A[idx_[a]].epochs) st[a].active = false;
      }
      check(cudaMemcpyAsync(d_epoch_loss.get(), epoch_loss.data(), sizeof(double) * S_, cudaMemcpyHostToDevice, s),
            "upload");
      check(cudaStreamSynchronize(s), "training");
    }

    check(cudaMemcpy(host.data(), params.get(), sizeof(float) * S_ * P, cudaMemcpyDeviceToHost), "downloading weights");
    std::vector<float> best;
    for (int a = 0; a < S_; ++a) {
      const float* src = host.data() + a * P;
      if (st[a].kept) {
        best.resize(P);
        check(cudaMemcpy(best.data(), kept.get() + a * P, sizeof(float) * P, cudaMemcpyDeviceToHost), "downloading weights");
        src = best.data();
      }
      std::copy(src, src + P, A[idx_[a]].out_params);
    }
  }

 private:
  template <typename Forward>
  void evaluate(cudaStream_t s, const std::vector<int>& which, DeviceBuffer<float>&, DeviceBuffer<int>&,
                DeviceBuffer<float>&, DeviceBuffer<int>& yb, DeviceBuffer<float>& Z, DeviceBuffer<float>&,
                DeviceBuffer<float>& rowloss, DeviceBuffer<int>& rowok, DeviceBuffer<int>& d_idx,
                DeviceBuffer<double>& d_val_loss, DeviceBuffer<long long>& d_val_ok, DeviceBuffer<double>& d_wn2,
                DeviceBuffer<float>& params, const std::vector<long long>& row_off, Forward& forward, long long b_off) {
    const auto& A = job_.adapters;
    const long long slots = static_cast<long long>(S_) * Bm_;
    check(cudaMemsetAsync(d_val_loss.get(), 0, sizeof(double) * S_, s), "memset");
    check(cudaMemsetAsync(d_val_ok.get(), 0, sizeof(long long) * S_, s), "memset");
    long long most = 0;
    for (int a : which) most = std::max(most, static_cast<long long>(A[idx_[a]].n_val));
    // Validation rows go through the forward pass Bm at a time; the tables' first slice holds them.
    std::vector<int> idx(static_cast<size_t>(slots));
    for (long long begin = 0; begin < most; begin += Bm_) {
      std::fill(idx.begin(), idx.end(), -1);
      for (int a : which) {
        const auto& ad = A[idx_[a]];
        for (long long r = 0; r < Bm_ && begin + r < ad.n_val; ++r)
          idx[a * Bm_ + r] = static_cast<int>(row_off[a] + ad.val_rows[begin + r]);
      }
      check(cudaMemcpyAsync(d_idx.get(), idx.data(), sizeof(int) * slots, cudaMemcpyHostToDevice, s), "upload");
      forward(nullptr);
      eval_rows<<<blocks_for(slots, 128), 128, 0, s>>>(Z.get(), yb.get(), params.get(), z_.P, b_off, slots, Bm_,
                                                      static_cast<int>(z_.k), rowloss.get(), rowok.get());
      reduce_eval<<<S_, 32, 0, s>>>(rowloss.get(), rowok.get(), Bm_, d_val_loss.get(), d_val_ok.get());
      // idx is reused by the next slice: wait before overwriting the host copy.
      check(cudaStreamSynchronize(s), "validation");
    }
    weight_norms<<<S_, 256, 0, s>>>(params.get(), z_.P, z_.d, z_.h, z_.k, d_wn2.get());
    check(cudaGetLastError(), "a validation kernel launch");
  }

  const MlopsCudaJob& job_;
  std::vector<int> idx_;
  int S_;
  int Bm_;
  int Cmax_;
  Sizes z_{};
};

// Device bytes one adapter needs while its sub-group trains (data, parameters, state, its share of the
// step workspace and tables).
double adapter_bytes(const MlopsCudaJob& job, const MlopsCudaAdapter& a, int Bm, long long Cmax) {
  const double P = job.h == 0 ? job.d * job.k + job.k : job.d * job.h + job.h + job.h * job.k + job.k;
  return a.rows * (job.d * 4.0 + 4.0) + P * 5 * 4.0 + Bm * (job.d + 2.0 * job.h + job.k + 3.0) * 4.0 +
         Cmax * (Bm + 3.0) * 4.0 + 64.0;
}

void train(const MlopsCudaJob& job) {
  if (job.n_adapters <= 0 || !job.adapters || job.d <= 0 || job.k < 2 || job.h < 0)
    throw Failure(MLOPS_CUDA_ERR_INVALID, "empty or malformed job");
  if (!job.callbacks.epoch_order || !job.callbacks.on_epoch)
    throw Failure(MLOPS_CUDA_ERR_INVALID, "the epoch_order and on_epoch callbacks are required");
  check(cudaSetDevice(job.device), "cudaSetDevice");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, job.device), "cudaGetDeviceProperties");
  if (prop.major < 8)
    throw Failure(MLOPS_CUDA_ERR_DEVICE, std::string(prop.name) + " has compute capability " + std::to_string(prop.major) +
                                             "." + std::to_string(prop.minor) + "; this module needs 8.0 or newer");
  Stream stream;
  Blas blas;
  check_blas(cublasSetMathMode(blas.h, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");  // full FP32, no TF32
  if (job.deterministic) check_blas(cublasSetAtomicsMode(blas.h, CUBLAS_ATOMICS_NOT_ALLOWED), "cublasSetAtomicsMode");
  // A fixed cuBLAS workspace: required for graph capture and keeps the kernel choice stable. It is set
  // after the stream because cublasSetStream resets the workspace to cuBLAS's own pool.
  check_blas(cublasSetStream(blas.h, stream.s), "cublasSetStream");
  constexpr size_t kWorkspace = 32u << 20;
  DeviceBuffer<char> workspace(kWorkspace, "the cuBLAS workspace");
  check_blas(cublasSetWorkspace(blas.h, workspace.get(), kWorkspace), "cublasSetWorkspace");

  size_t free_b = 0, total_b = 0;
  check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
  const double reserve = 256.0 * (1 << 20);
  double budget = job.memory_limit ? static_cast<double>(job.memory_limit) : static_cast<double>(free_b) * 0.92 - reserve;

  // Sub-groups in job order whose resident data and workspace fit the budget.
  int Bm_all = 1;
  long long C_all = 1;
  for (int i = 0; i < job.n_adapters; ++i) {
    const auto& a = job.adapters[i];
    if (a.batch_size <= 0 || a.n_train <= 0 || a.epochs <= 0 || a.rows > 0x7FFFFFFF)
      throw Failure(MLOPS_CUDA_ERR_INVALID, "adapter " + std::to_string(i) + " has no rows, batches or epochs");
    Bm_all = std::max(Bm_all, a.batch_size);
    C_all = std::max<long long>(C_all, (a.n_train + a.batch_size - 1) / a.batch_size);
  }
  int begin = 0;
  while (begin < job.n_adapters) {
    std::vector<int> members;
    double used = 0;
    long long total_rows = 0;
    for (int i = begin; i < job.n_adapters; ++i) {
      const double need = adapter_bytes(job, job.adapters[i], Bm_all, C_all);
      if (!members.empty() && (used + need > budget || total_rows + job.adapters[i].rows > 0x7FFFFFFF)) break;
      if (members.empty() && need > budget)
        throw Failure(MLOPS_CUDA_ERR_OOM, "adapter " + std::to_string(i) + " needs " + mib(need) + " of device memory (" +
                                              std::to_string(job.adapters[i].rows) + " rows × " + std::to_string(job.d) +
                                              " features), " + mib(budget) + " are usable (" + mib(double(free_b)) +
                                              " free of " + mib(double(total_b)) + ")");
      members.push_back(i);
      used += need;
      total_rows += job.adapters[i].rows;
    }
    begin += static_cast<int>(members.size());
    int Bm = 1;
    long long C = 1;
    for (int i : members) {
      const auto& a = job.adapters[i];
      Bm = std::max(Bm, a.batch_size);
      C = std::max<long long>(C, (a.n_train + a.batch_size - 1) / a.batch_size);
    }
    SubGroup(job, std::move(members), Bm, static_cast<int>(C)).run(stream, blas);
  }
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int32_t mlops_cuda_abi_version(void) { return MLOPS_CUDA_ABI_VERSION; }

__attribute__((visibility("default"))) int32_t mlops_cuda_device_count(char* err, size_t err_size) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    write_message(err, err_size, std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e));
    return -1;
  }
  return n;
}

__attribute__((visibility("default"))) int32_t mlops_cuda_device_name(int32_t device, char* out, size_t out_size) {
  cudaDeviceProp prop{};
  const cudaError_t e = cudaGetDeviceProperties(&prop, device);
  if (e != cudaSuccess) {
    cudaGetLastError();
    write_message(out, out_size, std::string("unknown device: ") + cudaGetErrorString(e));
    return 1;
  }
  write_message(out, out_size, prop.name);
  return prop.major >= 8 ? 0 : 2;
}

__attribute__((visibility("default"))) int32_t mlops_cuda_train(const MlopsCudaJob* job, char* err, size_t err_size) {
  try {
    if (!job) throw Failure(MLOPS_CUDA_ERR_INVALID, "no job");
    train(*job);
    return MLOPS_CUDA_OK;
  } catch (const Failure& f) {
    write_message(err, err_size, f.what());
    return f.code;
  } catch (const std::bad_alloc&) {
    write_message(err, err_size, "out of host memory");
    return MLOPS_CUDA_ERR_DEVICE;
  } catch (const std::exception& e) {
    write_message(err, err_size, e.what());
    return MLOPS_CUDA_ERR_DEVICE;
  }
}

}  // extern "C"
