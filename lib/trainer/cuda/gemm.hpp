// The GEMMs of the CUDA backend: fixed-order, batched, row-major, FP32 (no TF32). One launch computes the
// same small product for every adapter of a sub-group.
//
// Why not cuBLAS: cuBLAS picks its kernel (tile, split-K) by the whole call's shape, batch count
// included, and promises identical bits only for identical calls. An adapter trained alone and the same
// adapter inside a batch of 41 then see different kernels, and Adam carries the last-bit difference
// forward. Here every output element is one thread's chain of fused multiply-adds over k = 0, 1, ..., K-1
// (zero-padded past K), started from 0, whatever the tile, the grid, the batch count or the padding rows
// of a sub-group: the same bits alone and batched, by construction. The bias, where there is one, is then
// added to the finished sum (b + Σ), as the CPU backend's GEMM adds its product to a C initialised with b;
// the ReLU follows.
//
// This header is plain C++ as well as CUDA: the CPU tests run the same tile code, block by block and
// thread by thread, and compare it with a straight fma chain.
#pragma once

#if defined(__CUDACC__)
#define MLOPS_HD __host__ __device__ __forceinline__
#else
#define MLOPS_HD inline
#include <cmath>
#endif

namespace mlops::cuda_gemm {

/// What happens to the finished sum: stored as is, bias added, or bias added then max(·, 0).
enum class Epilogue { none, bias, bias_relu };

/// `batch` independent products C_b = op(A_b)·op(B_b) (M×N, reduction K), row-major. op(A) is A (M×K,
/// A[i*lda + k]) or, transposed, A stored K×M (A[k*lda + i]); op(B) is B (K×N, B[k*ldb + j]) or, transposed,
/// B stored N×K (B[j*ldb + k]). Problem b's matrices start at A + b*sA, B + b*sB, C + b*sC, its bias
/// (N floats) at bias + b*s_bias.
struct Problem {
  const float* A;
  long long lda, sA;
  const float* B;
  long long ldb, sB;
  float* C;
  long long ldc, sC;
  const float* bias;
  long long s_bias;
  long long M, N, K;
  int batch;
};

/// a·b + c rounded once (IEEE fma), the same on the device and the host.
MLOPS_HD float mul_add(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

/// One thread block's share of a product: a BM×BN tile of C, each of the (BM/TM)·(BN/TN) threads owning a
/// TM×TN block of it. The kernel runs load → barrier → accumulate → barrier for every BK-slice of k,
/// then store.
template <int BM, int BN, int BK, int TM, int TN, bool TA, bool TB>
struct Tile {
  static constexpr int kBM = BM, kBN = BN, kBK = BK, kThreads = (BM / TM) * (BN / TN);
  using Acc = float[TM][TN];
  static constexpr int kSharedA = BK * BM, kSharedB = BK * BN;
  static_assert(BM % TM == 0 && BN % TN == 0, "the thread blocks tile the block's tile");

  /// Thread t's share of the BK×BM slice of op(A) and BK×BN slice of op(B) from k0 into As[kk*BM + i],
  /// Bs[kk*BN + j]; zeros outside the matrices. Consecutive threads read consecutive addresses.
  static MLOPS_HD void load(const Problem& p, int b, long long row0, long long col0, long long k0, int t, float* As,
                            float* Bs) {
    const float* A = p.A + b * p.sA;
    const float* B = p.B + b * p.sB;
    for (int e = t; e < kSharedA; e += kThreads) {
      const int kk = TA ? e / BM : e % BK, ii = TA ? e % BM : e / BK;
      const long long i = row0 + ii, k = k0 + kk;
      As[kk * BM + ii] = i < p.M && k < p.K ? (TA ? A[k * p.lda + i] : A[i * p.lda + k]) : 0.0f;
    }
    for (int e = t; e < kSharedB; e += kThreads) {
      const int kk = TB ? e % BK : e / BN, jj = TB ? e / BK : e % BN;
      const long long j = col0 + jj, k = k0 + kk;
      Bs[kk * BN + jj] = j < p.N && k < p.K ? (TB ? B[j * p.ldb + k] : B[k * p.ldb + j]) : 0.0f;
    }
  }

  /// Thread t's TM×TN sums advanced over the slice, k in increasing order.
  static MLOPS_HD void accumulate(int t, const float* As, const float* Bs, float (&acc)[TM][TN]) {
    const int r0 = (t / (BN / TN)) * TM, c0 = (t % (BN / TN)) * TN;
    for (int kk = 0; kk < BK; ++kk) {
      float a[TM], bv[TN];
      for (int i = 0; i < TM; ++i) a[i] = As[kk * BM + r0 + i];
      for (int j = 0; j < TN; ++j) bv[j] = Bs[kk * BN + c0 + j];
      for (int i = 0; i < TM; ++i)
        for (int j = 0; j < TN; ++j) acc[i][j] = mul_add(a[i], bv[j], acc[i][j]);
    }
  }

  /// Thread t's sums written to C through the epilogue.
  static MLOPS_HD void store(const Problem& p, int b, long long row0, long long col0, int t, const float (&acc)[TM][TN],
                             Epilogue e) {
    const long long r0 = row0 + (t / (BN / TN)) * TM, c0 = col0 + (t % (BN / TN)) * TN;
    float* C = p.C + b * p.sC;
    const float* bias = p.bias ? p.bias + b * p.s_bias : nullptr;
    for (int i = 0; i < TM; ++i)
      for (int j = 0; j < TN; ++j) {
        const long long r = r0 + i, c = c0 + j;
        if (r >= p.M || c >= p.N) continue;
        float v = acc[i][j];
        if (e != Epilogue::none) v = bias[c] + v;
        if (e == Epilogue::bias_relu) v = v < 0.0f ? 0.0f : v;  // std::max(v, 0.0f), as the CPU
        C[r * p.ldc + c] = v;
      }
  }
};

/// The tile shapes by the product's width N (classes or hidden units): narrow products give every thread
/// a column of TM rows, wide ones a 4×4 block.
template <bool TA, bool TB>
using NarrowTile = Tile<256, 8, 16, 8, 1, TA, TB>;  // N <= 8
template <bool TA, bool TB>
using MidTile = Tile<128, 16, 16, 8, 1, TA, TB>;  // N <= 16
template <bool TA, bool TB>
using WideTile = Tile<64, 64, 16, 4, 4, TA, TB>;

}  // namespace mlops::cuda_gemm
