#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <thread>

#include "mlops/error.hpp"
#include "core/parallel.hpp"
#include "trainer/adam.hpp"
#include "trainer/backend.hpp"
#include "trainer/cpu_math.hpp"

namespace mlops::detail {

void ProgressSink::epoch(std::size_t adapter, const EpochMetrics& m) {
  {
    std::lock_guard lock(mu_);
    events_.push_back({adapter, m});
  }
  cv_.notify_one();
}

void ProgressSink::finish() {
  {
    std::lock_guard lock(mu_);
    finished_ = true;
  }
  cv_.notify_one();
}

bool ProgressSink::wait(std::deque<Event>& out, int ms) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return finished_ || !events_.empty(); });
  while (!events_.empty()) {
    out.push_back(events_.front());
    events_.pop_front();
  }
  return finished_;
}

namespace {

using adam::kBeta1;
using adam::kBeta2;
using adam::kEps;

// Sum of squared weights (biases excluded), for the L2 part of the reported loss.
double weight_norm2(const ParamLayout& L, const float* p) {
  double s = 0;
  for (std::size_t i = 0; i < L.size(); ++i)
    if (!L.is_bias(i)) s += static_cast<double>(p[i]) * p[i];
  return s;
}

void column_sums(const float* G, std::size_t rows, std::size_t cols, float* out) {
  std::fill(out, out + cols, 0.0f);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) out[c] += G[r * cols + c];
}

class CpuAdapterTrainer {
 public:
  explicit CpuAdapterTrainer(const AdapterPlan& plan)
      : plan_(plan), L_(plan.layout), B_(static_cast<std::size_t>(plan.spec->batch_size)), P_(L_.size()) {
    params_ = plan.init_params;
    grad_.assign(P_, 0.0f);
    m_.assign(P_, 0.0f);
    if (plan.spec->optimizer == Optimizer::adam) v_.assign(P_, 0.0f);
    const std::size_t b = std::min<std::size_t>(B_, plan.train_rows.size());
    Xb_.resize(b * L_.d);
    yb_.resize(b);
    Z_.resize(b * L_.k);
    if (L_.h) {
      H_.resize(b * L_.h);
      dH_.resize(b * L_.h);
    }
  }

  AdapterResult run(ProgressSink& sink) {
    const auto& spec = *plan_.spec;
    EpochTracker tracker(spec, !plan_.val_rows.empty());
    std::vector<float> kept;
    std::vector<std::uint32_t> order;
    int epoch = 1;
    for (; epoch <= spec.epochs; ++epoch) {
      if (sink.cancel.load(std::memory_order_relaxed)) break;
      plan_.epoch_order(epoch, order);
      double loss_sum = 0;
      for (std::size_t s = 0; s < plan_.steps_per_epoch; ++s) {
        const std::size_t begin = s * B_;
        const std::size_t rows = std::min(B_, order.size() - begin);
        loss_sum += step(order.data() + begin, rows);
        sink.steps(1);
      }
      const EpochMetrics m = evaluate_cpu(plan_, params_.data(), epoch, loss_sum);
      const auto d = tracker.record(m);
      if (d.keep) kept = params_;
      sink.epoch(plan_.index, m);
      if (d.stop) break;
    }
    if (epoch < spec.epochs) sink.drop_planned(static_cast<std::size_t>(spec.epochs - epoch) * plan_.steps_per_epoch);
    AdapterResult r;
    r.params = tracker.use_kept() && !kept.empty() ? std::move(kept) : std::move(params_);
    r.history = tracker.history();
    return r;
  }

 private:
  // One mini-batch: forward, softmax + weighted cross-entropy + gradient, backward, optimiser update.
  // Returns the batch's summed weighted cross-entropy.
  double step(const std::uint32_t* rows_idx, std::size_t rows) {
    const auto& ds = plan_.spec->dataset;
    const float* X = ds.X().data();
    const std::int32_t* y = ds.y().data();
    for (std::size_t r = 0; r < rows; ++r) {
      std::copy_n(X + static_cast<std::size_t>(rows_idx[r]) * L_.d, L_.d, Xb_.data() + r * L_.d);
      yb_[r] = y[rows_idx[r]];
    }
    forward(L_, params_.data(), Xb_.data(), rows, H_.data(), Z_.data());
    softmax_rows(Z_.data(), rows, L_.k);
    double loss = 0;
    const float inv_rows = 1.0f / static_cast<float>(rows);
    for (std::size_t r = 0; r < rows; ++r) {
      float* g = Z_.data() + r * L_.k;
      const auto label = static_cast<std::size_t>(yb_[r]);
      const float w = plan_.class_weights[label];
      loss += static_cast<double>(w) * -std::log(std::max(g[label], std::numeric_limits<float>::min()));
      const float scale = w * inv_rows;
      g[label] -= 1.0f;
      for (std::size_t c = 0; c < L_.k; ++c) g[c] *= scale;
    }
    const float* G = Z_.data();
    if (L_.h == 0) {
      gemm_tn(L_.d, L_.k, rows, Xb_.data(), G, 0.0f, grad_.data() + L_.w1());
      column_sums(G, rows, L_.k, grad_.data() + L_.b1());
    } else {
      gemm_tn(L_.h, L_.k, rows, H_.data(), G, 0.0f, grad_.data() + L_.w2());
      column_sums(G, rows, L_.k, grad_.data() + L_.b2());
      gemm_nt(rows, L_.h, L_.k, G, params_.data() + L_.w2(), 0.0f, dH_.data());
      for (std::size_t i = 0; i < rows * L_.h; ++i)
        if (H_[i] <= 0.0f) dH_[i] = 0.0f;
      gemm_tn(L_.d, L_.h, rows, Xb_.data(), dH_.data(), 0.0f, grad_.data() + L_.w1());
      column_sums(dH_.data(), rows, L_.h, grad_.data() + L_.b1());
    }
    update();
    return loss;
  }

  void update() {
    const auto& spec = *plan_.spec;
    const float lr = static_cast<float>(spec.learning_rate);
    const float l2 = static_cast<float>(spec.l2);
    // Weights get the L2 term, biases do not; the two ranges are contiguous per tensor.
    auto add_l2 = [&](std::size_t begin, std::size_t end) {
      for (std::size_t i = begin; i < end; ++i) grad_[i] += l2 * params_[i];
    };
    if (L_.h == 0) {
      add_l2(L_.w1(), L_.b1());
    } else {
      add_l2(L_.w1(), L_.b1());
      add_l2(L_.w2(), L_.b2());
    }
    float* p = params_.data();
    const float* g = grad_.data();
    float* m = m_.data();
    if (!v_.empty()) {
      ++t_;
      const float c1 = adam::correction(kBeta1, t_);
      const float c2 = adam::correction(kBeta2, t_);
      float* v = v_.data();
      for (std::size_t i = 0; i < P_; ++i) {
        m[i] = kBeta1 * m[i] + (1.0f - kBeta1) * g[i];
        v[i] = kBeta2 * v[i] + (1.0f - kBeta2) * g[i] * g[i];
        p[i] -= lr * (m[i] * c1) / (std::sqrt(v[i] * c2) + kEps);
      }
    } else {
      const float mu = static_cast<float>(spec.momentum);
      for (std::size_t i = 0; i < P_; ++i) {
        m[i] = mu * m[i] + g[i];
        p[i] -= lr * m[i];
      }
    }
  }

  const AdapterPlan& plan_;
  ParamLayout L_;
  std::size_t B_, P_;
  std::vector<float> params_, grad_, m_, v_;
  std::vector<float> Xb_, Z_, H_, dH_;
  std::vector<std::int32_t> yb_;
  long t_ = 0;
};

}  // namespace

EpochMetrics evaluate_cpu(const AdapterPlan& plan, const float* params, int epoch, double train_loss_sum) {
  const auto& L = plan.layout;
  EpochMetrics m;
  m.epoch = epoch;
  m.loss = train_loss_sum / static_cast<double>(plan.train_rows.size()) +
           0.5 * plan.spec->l2 * weight_norm2(L, params);
  if (plan.val_rows.empty()) {
    m.val_loss = m.val_accuracy = std::numeric_limits<double>::quiet_NaN();
    return m;
  }
  const auto& ds = plan.spec->dataset;
  constexpr std::size_t kChunk = 1024;
  const std::size_t chunk = std::min(kChunk, plan.val_rows.size());
  std::vector<float> Xc(chunk * L.d), Z(chunk * L.k), H(chunk * L.h);
  double loss = 0;
  std::size_t correct = 0;
  for (std::size_t begin = 0; begin < plan.val_rows.size(); begin += chunk) {
    const std::size_t rows = std::min(chunk, plan.val_rows.size() - begin);
    for (std::size_t r = 0; r < rows; ++r)
      std::copy_n(ds.X().data() + static_cast<std::size_t>(plan.val_rows[begin + r]) * L.d, L.d, Xc.data() + r * L.d);
    forward(L, params, Xc.data(), rows, H.data(), Z.data());
    softmax_rows(Z.data(), rows, L.k);
    for (std::size_t r = 0; r < rows; ++r) {
      const float* p = Z.data() + r * L.k;
      const auto label = static_cast<std::size_t>(ds.y()[plan.val_rows[begin + r]]);
      loss += -std::log(std::max(static_cast<double>(p[label]), 1e-38));
      if (static_cast<std::size_t>(std::max_element(p, p + L.k) - p) == label) ++correct;
    }
  }
  m.val_loss = loss / static_cast<double>(plan.val_rows.size());
  m.val_accuracy = static_cast<double>(correct) / static_cast<double>(plan.val_rows.size());
  return m;
}

std::vector<AdapterResult> train_cpu(const std::vector<AdapterPlan>& plans, unsigned threads, ProgressSink& sink) {
  std::vector<AdapterResult> results(plans.size());
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  threads = static_cast<unsigned>(std::max<std::size_t>(1, std::min<std::size_t>(threads, plans.size())));
  blas_single_threaded();
  detail::parallel_for(plans.size(), threads, [&](std::size_t i) {
    if (sink.cancel.load()) return false;
    try {
      results[i] = CpuAdapterTrainer(plans[i]).run(sink);
    } catch (...) {
      sink.cancel = true;  // the other adapters stop at their next step
      throw;
    }
    return true;
  });
  return results;
}

}  // namespace mlops::detail
