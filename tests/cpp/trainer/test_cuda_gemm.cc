// The CUDA backend's GEMM tiles (lib/trainer/cuda/gemm.hpp), run on the CPU block by block and thread by
// thread in the order the kernel's barriers impose. Each element must be the plain fma chain over k, so
// that an adapter's product has the same bits alone, among other adapters and with padding rows.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "trainer/cuda/gemm.hpp"

using namespace mlops::cuda_gemm;

namespace {

// What batched_gemm<T> does on the device, one block after the other.
template <class T>
void run_on_host(const Problem& p, Epilogue e) {
  std::vector<float> As(T::kSharedA), Bs(T::kSharedB);
  std::vector<typename T::Acc> acc(T::kThreads);
  for (int b = 0; b < p.batch; ++b)
    for (long long row0 = 0; row0 < p.M; row0 += T::kBM)
      for (long long col0 = 0; col0 < p.N; col0 += T::kBN) {
        for (auto& a : acc) std::memset(&a, 0, sizeof a);
        for (long long k0 = 0; k0 < p.K; k0 += T::kBK) {
          for (int t = 0; t < T::kThreads; ++t) T::load(p, b, row0, col0, k0, t, As.data(), Bs.data());
          for (int t = 0; t < T::kThreads; ++t) T::accumulate(t, As.data(), Bs.data(), acc[static_cast<std::size_t>(t)]);
        }
        for (int t = 0; t < T::kThreads; ++t) T::store(p, b, row0, col0, t, acc[static_cast<std::size_t>(t)], e);
      }
}

template <bool TA, bool TB>
void run_any(const Problem& p, Epilogue e) {
  if (p.N <= 8) run_on_host<NarrowTile<TA, TB>>(p, e);
  else if (p.N <= 16) run_on_host<MidTile<TA, TB>>(p, e);
  else run_on_host<WideTile<TA, TB>>(p, e);
}

std::vector<float> random_floats(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = g(rng);
  return v;
}

// Element (i, j) of problem b: fma over k = 0..K-1 from 0, then b + sum and the ReLU as the epilogue says.
template <bool TA, bool TB>
float expected(const Problem& p, int b, long long i, long long j, Epilogue e) {
  const float* A = p.A + b * p.sA;
  const float* B = p.B + b * p.sB;
  float s = 0.0f;
  for (long long k = 0; k < p.K; ++k)
    s = std::fma(TA ? A[k * p.lda + i] : A[i * p.lda + k], TB ? B[j * p.ldb + k] : B[k * p.ldb + j], s);
  if (e != Epilogue::none) s = p.bias[b * p.s_bias + j] + s;
  if (e == Epilogue::bias_relu) s = std::max(s, 0.0f);
  return s;
}

// batch problems of M×N over K, op(A), op(B) stored densely; C padded by 3 columns and a guard value.
template <bool TA, bool TB>
void check_shape(long long M, long long N, long long K, int batch, Epilogue e) {
  INFO("M=", M, " N=", N, " K=", K, " batch=", batch, " TA=", TA, " TB=", TB);
  const long long lda = TA ? M : K, ldb = TB ? K : N, ldc = N + 3;
  const auto A = random_floats(static_cast<std::size_t>(M * K * batch), 1);
  const auto B = random_floats(static_cast<std::size_t>(K * N * batch), 2);
  const auto bias = random_floats(static_cast<std::size_t>(N * batch), 3);
  std::vector<float> C(static_cast<std::size_t>(M * ldc * batch), -99.0f);
  const Problem p{A.data(), lda, M * K, B.data(), ldb, K * N, C.data(), ldc, M * ldc, bias.data(), N, M, N, K, batch};
  run_any<TA, TB>(p, e);
  bool all = true, guards = true;
  for (int b = 0; b < batch; ++b)
    for (long long i = 0; i < M; ++i) {
      for (long long j = 0; j < N; ++j) {
        const float want = expected<TA, TB>(p, b, i, j, e);
        const float got = C[static_cast<std::size_t>(b * M * ldc + i * ldc + j)];
        all = all && std::memcmp(&want, &got, sizeof want) == 0;
      }
      for (long long j = N; j < ldc; ++j) guards = guards && C[static_cast<std::size_t>(b * M * ldc + i * ldc + j)] == -99.0f;
    }
  CHECK(all);
  CHECK(guards);
}

}  // namespace

TEST_CASE("every GEMM tile computes each element as one fma chain over k, for every shape the trainer uses") {
  // Forward (op(A)·op(B) + bias, ReLU), weight gradients (Aᵀ·B), hidden gradients (A·Bᵀ); widths on both
  // sides of each tile choice, sizes that are not multiples of the tiles.
  check_shape<false, false>(37, 5, 33, 3, Epilogue::bias);
  check_shape<false, false>(130, 12, 20, 2, Epilogue::bias_relu);
  check_shape<false, false>(70, 67, 18, 2, Epilogue::bias_relu);
  check_shape<true, false>(33, 5, 45, 3, Epilogue::none);
  check_shape<true, false>(20, 16, 300, 1, Epilogue::none);
  check_shape<true, false>(66, 20, 17, 2, Epilogue::none);
  check_shape<false, true>(45, 8, 5, 2, Epilogue::none);
  check_shape<false, true>(17, 65, 3, 2, Epilogue::none);
}

TEST_CASE("an adapter's gradient GEMM has the same bits alone and padded inside a batch with a larger batch size") {
  // The weight gradient Xᵀ·G of one adapter with 23 rows: alone (K = 23), and as adapter 2 of 4 whose
  // largest batch is 100 (K = 100, its rows 23..99 zero, as gather_rows and softmax_xent_grad pad them).
  const long long d = 41, k = 6, rows = 23, Bm = 100;
  const auto X = random_floats(static_cast<std::size_t>(rows * d), 7), G = random_floats(static_cast<std::size_t>(rows * k), 8);
  std::vector<float> alone(static_cast<std::size_t>(d * k));
  run_any<true, false>({X.data(), d, 0, G.data(), k, 0, alone.data(), k, 0, nullptr, 0, d, k, rows, 1}, Epilogue::none);

  const int S = 4;
  auto Xb = random_floats(static_cast<std::size_t>(S * Bm * d), 9), Gb = random_floats(static_cast<std::size_t>(S * Bm * k), 10);
  std::fill(Xb.begin() + 2 * Bm * d, Xb.begin() + 3 * Bm * d, 0.0f);
  std::fill(Gb.begin() + 2 * Bm * k, Gb.begin() + 3 * Bm * k, 0.0f);
  std::copy(X.begin(), X.end(), Xb.begin() + 2 * Bm * d);
  std::copy(G.begin(), G.end(), Gb.begin() + 2 * Bm * k);
  const long long P = d * k + 9;  // parameters of one adapter: the gradient's place in the grad buffer
  std::vector<float> batched(static_cast<std::size_t>(S * P), 5.0f);
  run_any<true, false>({Xb.data(), d, Bm * d, Gb.data(), k, Bm * k, batched.data(), k, P, nullptr, 0, d, k, Bm, S},
                       Epilogue::none);
  CHECK(std::memcmp(alone.data(), batched.data() + 2 * P, sizeof(float) * alone.size()) == 0);
  CHECK(batched[static_cast<std::size_t>(2 * P + d * k)] == 5.0f);  // the biases' place is left alone
}
