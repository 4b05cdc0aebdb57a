// The CUDA backend of the trainer, built as libmlops_cuda.so and loaded by libmlops with dlopen (see abi.h).
//
// One call trains a group of adapters of one shape (d, h, k). Their data is copied to the device once,
// through pinned staging buffers (in sub-groups when it does not fit: each sub-group's data stays resident
// while it trains). A training step of all adapters together is a fixed sequence of launches, captured
// once as a CUDA graph:
//   gather each adapter's mini-batch rows -> batched GEMM(s) forward, bias (and ReLU) in their epilogue ->
//   softmax + cross-entropy + gradient -> batched GEMMs backward -> per-adapter bias-gradient and loss
//   reduction -> fused optimiser update of every parameter of every adapter -> step counter + 1.
// What changes from step to step (which rows, how many, Adam's bias corrections) lives in device tables
// the kernels index with the step counter, so the same graph replays every step. The tables hold a chunk
// of steps (schedule.hpp decides how many); the host fills the next chunk while the device runs the
// current one. Adapters with fewer rows in a step (a last partial batch, a smaller batch size, a finished
// adapter) are padded with zero rows that contribute nothing. No kernel uses atomics, and every sum has
// a fixed order that depends neither on the number of adapters nor on the padding (gemm.hpp): results
// repeat run after run on one GPU, and an adapter trained alone gets the bits it gets inside any batch.
// Adapters that share one Dataset share one device copy of it.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "trainer/cuda/abi.h"
#include "trainer/cuda/capture.hpp"
#include "trainer/cuda/handles.cuh"
#include "trainer/cuda/kernels.cuh"
#include "trainer/cuda/schedule.hpp"

namespace {

using namespace mlops_cuda;
namespace sched = mlops::cuda_schedule;

using cuda_gemm::Epilogue;

void notify(const MlopsCudaJob& job, const std::string& message) {
  if (job.callbacks.on_notice) job.callbacks.on_notice(job.callbacks.ctx, message.c_str());
}

// Copies the concatenation of host arrays to one device buffer through two pinned staging buffers: host
// threads fill one while the copy engine drains the other, so the upload runs at pinned speed and no
// pageable copy blocks the stream.
class PinnedUpload {
 public:
  struct Piece {
    const void* data;
    size_t bytes;
  };
  static constexpr size_t kStage = 64u << 20;

  PinnedUpload() : stage_{{kStage, "pinned staging buffer"}, {kStage, "pinned staging buffer"}} {}

  void run(void* device, const std::vector<Piece>& pieces, cudaStream_t s) {
    size_t total = 0;
    for (const auto& p : pieces) total += p.bytes;
    size_t piece = 0, piece_off = 0;
    for (size_t done = 0, turn = 0; done < total; ++turn) {
      const int b = static_cast<int>(turn % 2);
      check(cudaEventSynchronize(ready_[b].e), "waiting for a staging buffer");
      const size_t n = std::min(kStage, total - done);
      // The slices of the pieces that make up bytes [done, done + n), copied by several threads.
      struct Slice {
        const char* src;
        size_t at, bytes;
      };
      std::vector<Slice> slices;
      for (size_t at = 0; at < n;) {
        const size_t take = std::min(n - at, pieces[piece].bytes - piece_off);
        slices.push_back({static_cast<const char*>(pieces[piece].data) + piece_off, at, take});
        at += take;
        piece_off += take;
        if (piece_off == pieces[piece].bytes) ++piece, piece_off = 0;
      }
      char* stage = stage_[b].get();
      // Several threads copy, each a contiguous share of the buffer.
      const size_t threads = std::min<size_t>(8, std::max<size_t>(1, n >> 22));
      std::vector<std::thread> pool;
      auto copy_share = [&](size_t t) {
        const size_t lo = n * t / threads, hi = n * (t + 1) / threads;
        for (const auto& sl : slices) {
          const size_t a = std::max(lo, sl.at), b = std::min(hi, sl.at + sl.bytes);
          if (a < b) std::memcpy(stage + a, sl.src + (a - sl.at), b - a);
        }
      };
      for (size_t t = 1; t < threads; ++t) pool.emplace_back(copy_share, t);
      copy_share(0);
      for (auto& th : pool) th.join();
      check(cudaMemcpyAsync(static_cast<char*>(device) + done, stage, n, cudaMemcpyHostToDevice, s), "uploading data");
      check(cudaEventRecord(ready_[b].e, s), "cudaEventRecord");
      done += n;
    }
  }

 private:
  PinnedBuffer<char> stage_[2];
  Event ready_[2];
};

// ---- Training of one sub-group ------------------------------------------------------------------------

struct Sizes {
  long long d, h, k, P;
};

class SubGroup {
 public:
  SubGroup(const MlopsCudaJob& job, const sched::SubGroup& plan, const std::vector<sched::AdapterShape>& shapes)
      : job_(job), idx_(plan.members), S_(static_cast<int>(idx_.size())), Bm_(static_cast<int>(plan.largest_batch)),
        Cmax_(plan.table_steps) {
    z_ = {job.d, job.h, job.k, job.h == 0 ? job.d * job.k + job.k : job.d * job.h + job.h + job.h * job.k + job.k};
    for (int i : idx_) shapes_.push_back(shapes[static_cast<size_t>(i)]);
  }

  void run(Stream& stream, PinnedUpload& upload) {
    cudaStream_t s = stream.s;
    const auto& A = job_.adapters;
    const long long d = z_.d, h = z_.h, k = z_.k, P = z_.P;
    const long long slots = static_cast<long long>(S_) * Bm_;

    Resident data;
    upload_data(s, upload, data);

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

    // Per-step workspace and the step tables of one chunk (Cmax_ steps, capped by schedule.hpp).
    DeviceBuffer<float> Xb(slots * d, "the mini-batch buffer"), Z(slots * k, "logits"), H(slots * h, "hidden"),
        dH(slots * h, "hidden gradients");
    DeviceBuffer<double> rowloss(slots, "row losses");
    DeviceBuffer<int> yb(slots, "batch labels"), rowok(slots, "row results");
    DeviceBuffer<double> eval_loss(slots, "row losses");
    const auto cap = static_cast<size_t>(Cmax_);
    DeviceBuffer<int> d_idx(cap * slots, "step tables"), d_cnt(cap * S_, "step tables");
    DeviceBuffer<float2> d_corr(cap * S_, "step tables");
    DeviceBuffer<int> d_step(1, "step counter");
    DeviceBuffer<double> d_epoch_loss(S_, "metrics"), d_val_loss(S_, "metrics"), d_wn2(S_, "metrics");
    DeviceBuffer<long long> d_val_ok(S_, "metrics");
    check(cudaMemsetAsync(d_epoch_loss.get(), 0, sizeof(double) * S_, s), "memset");
    PinnedBuffer<int> h_idx(cap * slots, "pinned step tables"), h_cnt(cap * S_, "pinned step tables");
    PinnedBuffer<float> h_corr(cap * S_ * 2, "pinned step tables");
    Event tables_sent;

    const long long b_off = h == 0 ? d * k : d * h + h + h * k;  // b or b2
    const long long b1_off = d * h, w2_off = d * h + h;
    // op(A)·op(B) of every adapter (row-major; see gemm.hpp), adapter a's operands `a` strides apart.
    auto gemm_args = [&](const float* Am, long long lda, long long sa, const float* Bmat, long long ldb, long long sb,
                         float* C, long long ldc, long long sc, long long M, long long N, long long K,
                         const float* bias) {
      return cuda_gemm::Problem{Am, lda, sa, Bmat, ldb, sb, C, ldc, sc, bias, P, M, N, K, S_};
    };
    auto forward = [&](const int* step) {
      gather_rows<<<blocks_for(slots, 1), 128, 0, s>>>(data.X.get(), data.y.get(), d_idx.get(), step, slots, d, Xb.get(),
                                                       yb.get());
      if (h == 0) {  // Z = Xb·W + b
        gemm<false, false>(gemm_args(Xb.get(), d, Bm_ * d, params.get(), k, P, Z.get(), k, Bm_ * k, Bm_, k, d,
                                     params.get() + b_off), Epilogue::bias, s);
      } else {  // H = relu(Xb·W1 + b1), Z = H·W2 + b2
        gemm<false, false>(gemm_args(Xb.get(), d, Bm_ * d, params.get(), h, P, H.get(), h, Bm_ * h, Bm_, h, d,
                                     params.get() + b1_off), Epilogue::bias_relu, s);
        gemm<false, false>(gemm_args(H.get(), h, Bm_ * h, params.get() + w2_off, k, P, Z.get(), k, Bm_ * k, Bm_, k, h,
                                     params.get() + b_off), Epilogue::bias, s);
      }
    };
    auto train_step = [&]() {
      const int* step = d_step.get();
      forward(step);
      softmax_xent_grad<<<blocks_for(slots, 128), 128, 0, s>>>(Z.get(), yb.get(), d_cw.get(), d_cnt.get(), step, S_, Bm_,
                                                              static_cast<int>(k), rowloss.get());
      if (h == 0) {  // dW = Xbᵀ·G
        gemm<true, false>(gemm_args(Xb.get(), d, Bm_ * d, Z.get(), k, Bm_ * k, grad.get(), k, P, d, k, Bm_, nullptr),
                          Epilogue::none, s);
      } else {  // dW2 = Hᵀ·G, dH = G·W2ᵀ masked by H > 0, dW1 = Xbᵀ·dH
        gemm<true, false>(gemm_args(H.get(), h, Bm_ * h, Z.get(), k, Bm_ * k, grad.get() + w2_off, k, P, h, k, Bm_, nullptr),
                          Epilogue::none, s);
        gemm<false, true>(gemm_args(Z.get(), k, Bm_ * k, params.get() + w2_off, k, P, dH.get(), h, Bm_ * h, Bm_, h, k,
                                    nullptr), Epilogue::none, s);
        relu_mask<<<blocks_for(slots * h, 256), 256, 0, s>>>(dH.get(), H.get(), slots * h);
        gemm<true, false>(gemm_args(Xb.get(), d, Bm_ * d, dH.get(), h, Bm_ * h, grad.get(), h, P, d, h, Bm_, nullptr),
                          Epilogue::none, s);
      }
      reduce_step<<<S_, 64, 0, s>>>(Z.get(), dH.get(), rowloss.get(), grad.get(), P, b_off, b1_off, Bm_,
                                    static_cast<int>(k), static_cast<int>(h), d_cnt.get(), step, S_, d_epoch_loss.get());
      UpdateArgs u{params.get(), grad.get(), m.get(), v.get(), d_lr.get(), d_l2.get(), d_mom.get(), d_opt.get(),
                   d_cnt.get(), d_corr.get(), step, P, d, h, k, S_};
      update_params<<<blocks_for(P * S_, 256), 256, 0, s>>>(u);
      advance<<<1, 1, 0, s>>>(d_step.get());
    };

    // Capture one step as a graph. Where capture fails the same launches run directly (same results, more
    // launch overhead), and the caller is told why.
    Graph graph;
    const bool use_graph = capture(s, graph, train_step);

    // The schedule: chunk after chunk of step tables; the next chunk is filled while this one runs.
    sched::StepSchedule schedule(
        shapes_, data.row_off, Bm_, Cmax_,
        [this](int a, int epoch, uint32_t* out) { job_.callbacks.epoch_order(job_.callbacks.ctx, idx_[a], epoch, out); });
    auto send = [&](const sched::StepSchedule::Chunk& c) {
      check(cudaMemcpyAsync(d_idx.get(), h_idx.get(), sizeof(int) * c.steps * slots, cudaMemcpyHostToDevice, s), "upload tables");
      check(cudaMemcpyAsync(d_cnt.get(), h_cnt.get(), sizeof(int) * c.steps * S_, cudaMemcpyHostToDevice, s), "upload tables");
      check(cudaMemcpyAsync(d_corr.get(), h_corr.get(), sizeof(float2) * c.steps * S_, cudaMemcpyHostToDevice, s),
            "upload tables");
      check(cudaEventRecord(tables_sent.e, s), "cudaEventRecord");
    };
    sched::StepSchedule::Chunk chunk = schedule.fill(h_idx.get(), h_cnt.get(), h_corr.get());
    if (chunk.steps > 0) send(chunk);
    std::vector<double> epoch_loss(S_), val_loss(S_), wn2(S_);
    std::vector<long long> val_ok(S_);
    std::vector<char> kept_any(S_, 0);
    std::vector<int> ended;
    while (chunk.steps > 0) {
      check(cudaMemsetAsync(d_step.get(), 0, sizeof(int), s), "memset");
      for (long long c = 0; c < chunk.steps; ++c) {
        if (use_graph) check(cudaGraphLaunch(graph.exec, s), "cudaGraphLaunch");
        else train_step();
      }
      check(cudaGetLastError(), "a training kernel launch");
      const auto ends = chunk.ends;
      const long long steps_done = chunk.adapter_steps;
      // While the device trains: the next chunk's tables, into the pinned buffer once its last upload left.
      check(cudaEventSynchronize(tables_sent.e), "uploading step tables");
      schedule.fill(h_idx.get(), h_cnt.get(), h_corr.get());
      ended.clear();
      for (const auto& e : ends) ended.push_back(e.adapter);
      if (!ended.empty())
        evaluate(s, ended, data, yb, Z, eval_loss, rowok, d_idx, d_val_loss, d_val_ok, d_wn2, params, forward);
      check(cudaStreamSynchronize(s), "training");
      if (job_.callbacks.on_steps && job_.callbacks.on_steps(job_.callbacks.ctx, steps_done) != 0)
        throw Failure(MLOPS_CUDA_ERR_CANCELLED, "cancelled");
      if (!ends.empty()) {
        check(cudaMemcpy(epoch_loss.data(), d_epoch_loss.get(), sizeof(double) * S_, cudaMemcpyDeviceToHost), "download");
        check(cudaMemcpy(val_loss.data(), d_val_loss.get(), sizeof(double) * S_, cudaMemcpyDeviceToHost), "download");
        check(cudaMemcpy(val_ok.data(), d_val_ok.get(), sizeof(long long) * S_, cudaMemcpyDeviceToHost), "download");
        check(cudaMemcpy(wn2.data(), d_wn2.get(), sizeof(double) * S_, cudaMemcpyDeviceToHost), "download");
        for (const auto& e : ends) {
          const int a = e.adapter;
          const int32_t flags = job_.callbacks.on_epoch(job_.callbacks.ctx, idx_[a], e.epoch, epoch_loss[a], wn2[a],
                                                        val_loss[a], val_ok[a]);
          epoch_loss[a] = 0.0;
          if (flags & MLOPS_CUDA_CANCEL) throw Failure(MLOPS_CUDA_ERR_CANCELLED, "cancelled");
          if (flags & MLOPS_CUDA_KEEP) {
            check(cudaMemcpyAsync(kept.get() + a * P, params.get() + a * P, sizeof(float) * P, cudaMemcpyDeviceToDevice, s),
                  "keeping the best weights");
            kept_any[a] = 1;
          }
          if (flags & MLOPS_CUDA_STOP) schedule.stop(a);
        }
        check(cudaMemcpyAsync(d_epoch_loss.get(), epoch_loss.data(), sizeof(double) * S_, cudaMemcpyHostToDevice, s),
              "upload");
      }
      chunk = schedule.chunk();
      if (chunk.steps > 0) send(chunk);
      check(cudaStreamSynchronize(s), "training");
    }

    check(cudaMemcpy(host.data(), params.get(), sizeof(float) * S_ * P, cudaMemcpyDeviceToHost), "downloading weights");
    std::vector<float> best;
    for (int a = 0; a < S_; ++a) {
      const float* src = host.data() + a * P;
      if (kept_any[a]) {
        best.resize(P);
        check(cudaMemcpy(best.data(), kept.get() + a * P, sizeof(float) * P, cudaMemcpyDeviceToHost), "downloading weights");
        src = best.data();
      }
      std::copy(src, src + P, A[idx_[a]].out_params);
    }
  }

 private:
  // The sub-group's data on the device for the whole sub-group: each distinct dataset once (adapters of one
  // Dataset share its copy), every adapter's validation rows as indices into it, and which adapters a
  // validation pass covers (with its pinned host copy).
  struct Resident {
    DeviceBuffer<float> X;
    DeviceBuffer<int> y, val_rows, which;
    DeviceBuffer<long long> val_off, n_val;
    PinnedBuffer<int> which_host;
    std::vector<long long> row_off;  // adapter -> its dataset's first row in X
  };

  void upload_data(cudaStream_t s, PinnedUpload& upload, Resident& r) {
    const auto& A = job_.adapters;
    const long long d = z_.d;
    r.row_off.assign(S_, 0);
    long long total_rows = 0;
    std::vector<PinnedUpload::Piece> xs, ys;
    std::map<int, long long> placed;  // dataset (AdapterShape::data) -> its first row in X
    for (int a = 0; a < S_; ++a) {
      const auto& ad = A[idx_[a]];
      const auto [at, added] = placed.emplace(shapes_[a].data, total_rows);
      r.row_off[a] = at->second;
      if (!added) continue;
      total_rows += ad.rows;
      xs.push_back({ad.X, sizeof(float) * static_cast<size_t>(ad.rows * d)});
      ys.push_back({ad.y, sizeof(int) * static_cast<size_t>(ad.rows)});
    }
    r.X.allocate(static_cast<size_t>(total_rows * d), "the training data X");
    r.y.allocate(static_cast<size_t>(total_rows), "the labels y");
    upload.run(r.X.get(), xs, s);
    upload.run(r.y.get(), ys, s);
    std::vector<long long> val_off(S_), n_val(S_);
    std::vector<int> val_rows;
    for (int a = 0; a < S_; ++a) {
      const auto& ad = A[idx_[a]];
      val_off[a] = static_cast<long long>(val_rows.size());
      n_val[a] = ad.n_val;
      for (long long i = 0; i < ad.n_val; ++i) val_rows.push_back(static_cast<int>(r.row_off[a] + ad.val_rows[i]));
    }
    r.val_rows.allocate(val_rows.size(), "validation rows");
    upload.run(r.val_rows.get(), {{val_rows.data(), sizeof(int) * val_rows.size()}}, s);
    r.val_off.allocate(S_, "validation rows");
    r.n_val.allocate(S_, "validation rows");
    r.which.allocate(S_, "validation rows");
    r.which_host.allocate(S_, "the adapters to validate");
    check(cudaMemcpyAsync(r.val_off.get(), val_off.data(), sizeof(long long) * S_, cudaMemcpyHostToDevice, s), "upload");
    check(cudaMemcpyAsync(r.n_val.get(), n_val.data(), sizeof(long long) * S_, cudaMemcpyHostToDevice, s), "upload");
  }

  // Captures one step as a graph; false (and the caller is told why) where it cannot be, and the same
  // launches run directly. Whatever train_step throws, the stream leaves capture mode first.
  template <typename Step>
  bool capture(cudaStream_t s, Graph& graph, Step& train_step) {
    auto failed = [](const char* call, cudaError_t e) {
      return e == cudaSuccess ? std::string() : std::string(call) + ": " + cudaGetErrorString(e);
    };
    std::string why = capture_step(
        [&] { return failed("cudaStreamBeginCapture", cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal)); },
        train_step, [&] { return failed("cudaStreamEndCapture", cudaStreamEndCapture(s, &graph.graph)); });
    if (why.empty()) why = failed("cudaGraphInstantiate", cudaGraphInstantiate(&graph.exec, graph.graph, 0));
    cudaGetLastError();  // a failed capture leaves an error behind that is not the training's
    if (why.empty()) return true;
    notify(job_, "the training step of " + std::to_string(S_) + " adapter(s) could not be captured as a CUDA graph (" +
                     why + "); it runs as direct launches: same results, more launch overhead");
    return false;
  }

  // The validation pass of the adapters in `which`: their validation rows go through the forward pass Bm
  // at a time, each slice's slots built on the device from the resident rows (the tables' first slice
  // holds them), all in stream order without a wait.
  template <typename Forward>
  void evaluate(cudaStream_t s, const std::vector<int>& which, Resident& val, DeviceBuffer<int>& yb,
                DeviceBuffer<float>& Z, DeviceBuffer<double>& rowloss, DeviceBuffer<int>& rowok,
                DeviceBuffer<int>& d_idx, DeviceBuffer<double>& d_val_loss, DeviceBuffer<long long>& d_val_ok,
                DeviceBuffer<double>& d_wn2, DeviceBuffer<float>& params, Forward& forward) {
    const auto& A = job_.adapters;
    const long long slots = static_cast<long long>(S_) * Bm_;
    check(cudaMemsetAsync(d_val_loss.get(), 0, sizeof(double) * S_, s), "memset");
    check(cudaMemsetAsync(d_val_ok.get(), 0, sizeof(long long) * S_, s), "memset");
    long long most = 0;
    std::fill(val.which_host.get(), val.which_host.get() + S_, 0);
    for (int a : which) {
      most = std::max(most, static_cast<long long>(A[idx_[a]].n_val));
      val.which_host[static_cast<size_t>(a)] = 1;
    }
    check(cudaMemcpyAsync(val.which.get(), val.which_host.get(), sizeof(int) * S_, cudaMemcpyHostToDevice, s), "upload");
    for (long long begin = 0; begin < most; begin += Bm_) {
      validation_slice<<<blocks_for(slots, 256), 256, 0, s>>>(val.val_rows.get(), val.val_off.get(), val.n_val.get(),
                                                              val.which.get(), begin, S_, Bm_, d_idx.get());
      forward(nullptr);
      eval_rows<<<blocks_for(slots, 128), 128, 0, s>>>(Z.get(), yb.get(), slots, static_cast<int>(z_.k), rowloss.get(),
                                                      rowok.get());
      reduce_eval<<<S_, 32, 0, s>>>(rowloss.get(), rowok.get(), Bm_, d_val_loss.get(), d_val_ok.get());
    }
    weight_norms<<<S_, 256, 0, s>>>(params.get(), z_.P, z_.d, z_.h, z_.k, d_wn2.get());
    check(cudaGetLastError(), "a validation kernel launch");
  }

  const MlopsCudaJob& job_;
  std::vector<int> idx_;
  std::vector<sched::AdapterShape> shapes_;
  int S_;
  int Bm_;
  long long Cmax_;
  Sizes z_{};
};

void train(const MlopsCudaJob& job) {
  if (job.n_adapters <= 0 || !job.adapters || job.d <= 0 || job.k < 2 || job.h < 0)
    throw Failure(MLOPS_CUDA_ERR_INVALID, "empty or malformed job");
  if (!job.callbacks.epoch_order || !job.callbacks.on_epoch)
    throw Failure(MLOPS_CUDA_ERR_INVALID, "the epoch_order and on_epoch callbacks are required");
  if (!job.deterministic) throw Failure(MLOPS_CUDA_ERR_INVALID, "every job is deterministic; deterministic=0 is not a mode");
  std::vector<sched::AdapterShape> shapes;
  std::map<std::tuple<const float*, const int32_t*, int64_t>, int> datasets;
  for (int i = 0; i < job.n_adapters; ++i) {
    const auto& a = job.adapters[i];
    if (a.batch_size <= 0 || a.n_train <= 0 || a.epochs <= 0 || a.rows > 0x7FFFFFFF || a.batch_size > a.n_train)
      throw Failure(MLOPS_CUDA_ERR_INVALID, "adapter " + std::to_string(i) + " has no rows, batches or epochs");
    // Adapters with one dataset (the same host arrays) carry the index of the first of them.
    const int data = datasets.emplace(std::make_tuple(a.X, a.y, a.rows), i).first->second;
    shapes.push_back({a.rows, a.n_train, a.batch_size, a.epochs, a.n_val, data});
  }
  DeviceGuard device(job.device);
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, job.device), "cudaGetDeviceProperties");
  if (prop.major < 8)
    throw Failure(MLOPS_CUDA_ERR_DEVICE, std::string(prop.name) + " has compute capability " + std::to_string(prop.major) +
                                             "." + std::to_string(prop.minor) + "; this module needs 8.0 or newer");
  Stream stream;
  PinnedUpload upload;

  size_t free_b = 0, total_b = 0;
  check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
  const double reserve = 256.0 * (1 << 20);
  const double budget =
      job.memory_limit ? static_cast<double>(job.memory_limit) : static_cast<double>(free_b) * 0.92 - reserve;
  const auto grouping = sched::plan_subgroups(job.d, job.h, job.k, shapes, budget);
  if (grouping.too_big >= 0) {
    const int i = grouping.too_big;
    throw Failure(MLOPS_CUDA_ERR_OOM, "adapter " + std::to_string(i) + " needs " + mib(grouping.too_big_bytes) +
                                          " of device memory (" + std::to_string(job.adapters[i].rows) + " rows × " +
                                          std::to_string(job.d) + " features), " + mib(budget) + " are usable (" +
                                          mib(double(free_b)) + " free of " + mib(double(total_b)) + ")");
  }
  if (grouping.groups.size() > 1)
    notify(job, std::to_string(job.n_adapters) + " adapters of shape d=" + std::to_string(job.d) + " h=" +
                    std::to_string(job.h) + " k=" + std::to_string(job.k) + " train in " +
                    std::to_string(grouping.groups.size()) + " sub-groups: device memory holds " + mib(budget) +
                    " for them (the weights are the same bits as in one group)");
  for (const auto& g : grouping.groups) SubGroup(job, g, shapes).run(stream, upload);
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int32_t mlops_cuda_abi_version(void) { return MLOPS_CUDA_ABI_VERSION; }

__attribute__((visibility("default"))) size_t mlops_cuda_abi_layout(uint64_t* out, size_t n) {
  return mlops_cuda_abi_layout_of(out, n);
}

__attribute__((visibility("default"))) int32_t mlops_cuda_device_count(char* err, size_t err_size) {
  return guarded(err, err_size, -1, [&]() -> int32_t {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e == cudaSuccess) return n;
    cudaGetLastError();
    write_message(err, err_size, (std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e)).c_str());
    return -1;
  });
}

__attribute__((visibility("default"))) int32_t mlops_cuda_device_name(int32_t device, char* out, size_t out_size) {
  return guarded(out, out_size, 1, [&]() -> int32_t {
    cudaDeviceProp prop{};
    const cudaError_t e = cudaGetDeviceProperties(&prop, device);
    if (e != cudaSuccess) {
      cudaGetLastError();
      write_message(out, out_size, (std::string("unknown device: ") + cudaGetErrorString(e)).c_str());
      return 1;
    }
    write_message(out, out_size, prop.name);
    return prop.major >= 8 ? 0 : 2;
  });
}

__attribute__((visibility("default"))) int32_t mlops_cuda_train(const MlopsCudaJob* job, char* err, size_t err_size) {
  return guarded(err, err_size, MLOPS_CUDA_ERR_DEVICE, [&]() -> int32_t {
    if (!job) throw Failure(MLOPS_CUDA_ERR_INVALID, "no job");
    train(*job);
    return MLOPS_CUDA_OK;
  });
}

}  // extern "C"
