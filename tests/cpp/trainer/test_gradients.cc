// The CPU backend's gradients against finite differences of the loss it documents, for both models:
// one full-batch SGD step (momentum 0) moves the weights by exactly -lr * gradient.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "mlops/trainer.hpp"
#include "trainer/plan.hpp"

using namespace mlops;

namespace {

Dataset random_data(std::size_t rows, std::size_t d, std::size_t k, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n01;
  std::vector<float> X(rows * d);
  for (auto& v : X) v = n01(rng);
  std::vector<std::int32_t> y(rows);
  for (std::size_t i = 0; i < rows; ++i) y[i] = static_cast<std::int32_t>(i % k);
  std::vector<std::string> classes;
  for (std::size_t c = 0; c < k; ++c) classes.push_back(std::to_string(c));
  return Dataset(std::move(X), rows, d, std::move(y), std::move(classes));
}

// mean_i w[y_i] * CE_i + l2/2 * |weights|^2, in double, straight from the documented formula.
double loss(const detail::ParamLayout& L, const std::vector<double>& p, const Dataset& ds, double l2,
            const std::vector<double>& cw) {
  double total = 0;
  for (std::size_t i = 0; i < ds.rows(); ++i) {
    const float* x = ds.X().data() + i * L.d;
    std::vector<double> in(x, x + L.d);
    std::size_t width = L.d;
    if (L.h > 0) {
      std::vector<double> hid(L.h);
      for (std::size_t j = 0; j < L.h; ++j) {
        double s = p[L.b1() + j];
        for (std::size_t t = 0; t < L.d; ++t) s += in[t] * p[L.w1() + t * L.h + j];
        hid[j] = std::max(s, 0.0);
      }
      in = hid;
      width = L.h;
    }
    const std::size_t w_off = L.h ? L.w2() : L.w1();
    std::vector<double> z(L.k);
    for (std::size_t c = 0; c < L.k; ++c) {
      double s = p[L.b2() + c];
      for (std::size_t t = 0; t < width; ++t) s += in[t] * p[w_off + t * L.k + c];
      z[c] = s;
    }
    double mx = *std::max_element(z.begin(), z.end()), sum = 0;
    for (double v : z) sum += std::exp(v - mx);
    const auto label = static_cast<std::size_t>(ds.y()[i]);
    total += cw[label] * -(z[label] - mx - std::log(sum));
  }
  double reg = 0;
  for (std::size_t j = 0; j < L.size(); ++j)
    if (!L.is_bias(j)) reg += p[j] * p[j];
  return total / static_cast<double>(ds.rows()) + 0.5 * l2 * reg;
}

void check_gradient(std::size_t hidden) {
  AdapterSpec s;
  s.name = "grad";
  s.dataset = random_data(24, 5, 3, 11);
  s.hidden = static_cast<std::int64_t>(hidden);
  s.epochs = 1;
  s.batch_size = 24;  // one full batch
  s.validation_fraction = 0;
  s.optimizer = Optimizer::sgd;
  s.momentum = 0;
  s.learning_rate = 1e-3;
  s.l2 = 0.05;
  s.class_weights = {1.0, 2.0, 0.5};
  TrainerOptions o;
  o.device = "cpu";
  o.seed = 5;
  auto plan = detail::make_plan(s, 0, o.seed);
  auto trained = CudaTrainer(o).fit({s})[0];
  const auto after = trained.adapter.weights();
  const auto& L = plan.layout;
  std::vector<double> p0(plan.init_params.begin(), plan.init_params.end());
  const std::vector<double> cw(s.class_weights.begin(), s.class_weights.end());
  std::size_t checked = 0;
  for (std::size_t j = 0; j < L.size(); j += 3) {
    auto plus = p0, minus = p0;
    const double eps = 1e-4;
    plus[j] += eps;
    minus[j] -= eps;
    const double numeric = (loss(L, plus, s.dataset, s.l2, cw) - loss(L, minus, s.dataset, s.l2, cw)) / (2 * eps);
    const double analytic = (p0[j] - static_cast<double>(after[j])) / s.learning_rate;
    INFO("hidden ", hidden, " parameter ", j);
    CHECK(analytic == doctest::Approx(numeric).epsilon(2e-3).scale(0.1));
    ++checked;
  }
  CHECK(checked > 5);
}

}  // namespace

TEST_CASE("softmax gradient matches finite differences") { check_gradient(0); }
TEST_CASE("MLP gradient matches finite differences") { check_gradient(4); }
