// Evaluation arithmetic: classification metrics of one model on labelled rows, the exact paired
// comparison of two models on the same rows, and the gate that turns both into a verdict.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <map>
#include <unordered_map>

#include "mlops/adapter.hpp"
#include "mlops/dataset.hpp"
#include "mlops/error.hpp"
#include "mlops/evaluation.hpp"

namespace mlops {

using nlohmann::json;

json ClassificationMetrics::to_json() const {
  return {{"rows", rows}, {"accuracy", accuracy}, {"macro_f1", macro_f1}, {"log_loss", log_loss}, {"recall", recall}};
}

ClassificationMetrics score(const Adapter& adapter, const Dataset& rows, std::vector<char>* correct) {
  ClassificationMetrics m;
  m.rows = static_cast<std::int64_t>(rows.rows());
  if (correct) correct->assign(rows.rows(), 0);
  if (rows.rows() == 0) return m;
  if (rows.cols() != adapter.features())
    throw DataError("evaluation rows of table '" + rows.lineage().table + "' have " + std::to_string(rows.cols()) +
                    " features, the model takes " + std::to_string(adapter.features()));
  const auto proba = adapter.predict_proba(rows.X(), rows.rows());
  const std::size_t k = adapter.num_classes();
  std::unordered_map<std::string, std::size_t> model_index;
  for (std::size_t c = 0; c < k; ++c) model_index.emplace(adapter.classes()[c], c);
  // Per label: true rows, predicted rows, rows both true and predicted.
  std::map<std::string, std::array<std::int64_t, 3>> counts;
  std::int64_t right = 0;
  double loss = 0;
  const auto y = rows.y();
  for (std::size_t i = 0; i < rows.rows(); ++i) {
    const float* p = proba.data() + i * k;
    const std::size_t best = static_cast<std::size_t>(std::max_element(p, p + k) - p);
    const std::string& truth = rows.classes()[static_cast<std::size_t>(y[i])];
    const std::string& predicted = adapter.classes()[best];
    auto it = model_index.find(truth);
    const double p_true = it == model_index.end() ? 0.0 : static_cast<double>(p[it->second]);
    loss -= std::log(std::clamp(p_true, 1e-15, 1.0));
    counts[truth][0] += 1;
    counts[predicted][1] += 1;
    if (truth == predicted) {
      counts[truth][2] += 1;
      ++right;
      if (correct) (*correct)[i] = 1;
    }
  }
  const double n = static_cast<double>(rows.rows());
  m.accuracy = static_cast<double>(right) / n;
  m.log_loss = loss / n;
  double f1_sum = 0;
  for (const auto& [label, c] : counts) {
    if (c[0] > 0) m.recall[label] = static_cast<double>(c[2]) / static_cast<double>(c[0]);
    f1_sum += 2.0 * static_cast<double>(c[2]) / static_cast<double>(c[0] + c[1]);
  }
  m.macro_f1 = f1_sum / static_cast<double>(counts.size());
  return m;
}

namespace {

// P(X <= k) for X ~ Binomial(m, p).
double binomial_cdf(std::int64_t k, std::int64_t m, double p) {
  if (k < 0) return 0;
  if (k >= m) return 1;
  if (p <= 0) return 1;
  if (p >= 1) return 0;
  const double lp = std::log(p), lq = std::log1p(-p), lm = std::lgamma(static_cast<double>(m) + 1);
  double sum = 0;
  for (std::int64_t i = 0; i <= k; ++i) {
    const double x = static_cast<double>(i);
    sum += std::exp(lm - std::lgamma(x + 1) - std::lgamma(static_cast<double>(m) - x + 1) + x * lp +
                    (static_cast<double>(m) - x) * lq);
  }
  return std::min(sum, 1.0);
}

// The p in [0, 1] where the monotone f(p) crosses `target` (f increasing when `increasing`).
template <class F>
double solve(F&& f, double target, bool increasing) {
  double lo = 0, hi = 1;
  for (int i = 0; i < 60; ++i) {
    const double mid = (lo + hi) / 2;
    if ((f(mid) < target) == increasing) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

std::string points(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%+.1f", fraction * 100);
  return buf;
}

std::string fixed(double v, const char* format = "%.3f") {
  char buf[32];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

}  // namespace

json PairedComparison::to_json() const {
  return {{"rows", rows}, {"candidate_only", candidate_only}, {"baseline_only", baseline_only}, {"delta", delta},
          {"low", low}, {"high", high}, {"confidence", confidence}, {"p_value", p_value}};
}

PairedComparison compare_paired(std::span<const char> candidate_correct, std::span<const char> baseline_correct,
                                double confidence) {
  if (candidate_correct.size() != baseline_correct.size())
    throw ConfigError("paired comparison: " + std::to_string(candidate_correct.size()) + " candidate rows but " +
                      std::to_string(baseline_correct.size()) + " baseline rows");
  if (!(confidence > 0 && confidence < 1))
    throw ConfigError("paired comparison: confidence " + std::to_string(confidence) + " is not in (0, 1)");
  PairedComparison c;
  c.confidence = confidence;
  c.rows = static_cast<std::int64_t>(candidate_correct.size());
  for (std::size_t i = 0; i < candidate_correct.size(); ++i) {
    if (candidate_correct[i] && !baseline_correct[i]) ++c.candidate_only;
    if (!candidate_correct[i] && baseline_correct[i]) ++c.baseline_only;
  }
  const std::int64_t b = c.candidate_only, m = c.candidate_only + c.baseline_only;
  if (c.rows == 0 || m == 0) return c;  // no discordant row: no evidence of a change either way
  const double n = static_cast<double>(c.rows), alpha = 1 - confidence;
  c.delta = static_cast<double>(b - c.baseline_only) / n;
  // Clopper–Pearson bounds of the candidate's share of the discordant rows.
  const double share_low = b == 0 ? 0.0 : solve([&](double p) { return 1 - binomial_cdf(b - 1, m, p); }, alpha / 2, true);
  const double share_high = b == m ? 1.0 : solve([&](double p) { return binomial_cdf(b, m, p); }, alpha / 2, false);
  c.low = (2 * share_low - 1) * static_cast<double>(m) / n;
  c.high = (2 * share_high - 1) * static_cast<double>(m) / n;
  c.p_value = std::min(1.0, 2 * binomial_cdf(std::min(b, c.baseline_only), m, 0.5));
  return c;
}

json CommitEvaluation::to_json() const {
  return {{"commit", commit}, {"role", role}, {"rows_digest", rows_digest}, {"candidate", candidate.to_json()},
          {"baseline", baseline.to_json()}, {"comparison", comparison.to_json()}};
}

json EvaluationItem::to_json() const {
  json list = json::array();
  for (const auto& e : evaluations) list.push_back(e.to_json());
  return {{"name", name},         {"candidate_version", candidate_version}, {"baseline_version", baseline_version},
          {"verdict", verdict},   {"passed", passed()},                     {"reasons", reasons},
          {"evaluations", list},  {"gate", gate.to_json()},                 {"error", error}};
}

const EvaluationItem* EvaluationReport::find(const std::string& name) const noexcept {
  for (const auto& i : items)
    if (i.name == name) return &i;
  return nullptr;
}

std::size_t EvaluationReport::failed() const {
  return static_cast<std::size_t>(std::count_if(items.begin(), items.end(), [](const EvaluationItem& i) {
    return i.verdict == "fail" || i.verdict == "error";
  }));
}

json EvaluationReport::to_json() const {
  json list = json::array();
  for (const auto& i : items) list.push_back(i.to_json());
  return {{"against", against}, {"at", at}, {"items", list}, {"failed", failed()}};
}

namespace pipeline {

std::vector<std::string> floor_failures(const GateSettings& g, const ClassificationMetrics& m, const std::string& where) {
  std::vector<std::string> failures;
  if (m.rows < g.min_eval_rows)
    failures.push_back("only " + std::to_string(m.rows) + " evaluation rows" + where + ", fewer than min_eval_rows " +
                       std::to_string(g.min_eval_rows));
  if (m.rows > 0 && m.accuracy < g.min_accuracy)
    failures.push_back("accuracy " + fixed(m.accuracy) + where + " is below min_accuracy " + fixed(g.min_accuracy));
  return failures;
}

}  // namespace pipeline

void apply_gate(EvaluationItem& item) {
  const GateSettings& g = item.gate;
  std::vector<std::string> failures, notes;
  for (const auto& ev : item.evaluations) {
    const std::string where = ev.role == "eval_ref"
                                  ? " on the evaluation ref " + g.eval_ref + " (" + ev.commit.substr(0, 12) + ")"
                                  : " on the " + ev.role + "'s data (" + ev.commit.substr(0, 12) + ")";
    for (auto& f : pipeline::floor_failures(g, ev.candidate, where)) failures.push_back(std::move(f));
    const PairedComparison& c = ev.comparison;
    if (c.rows == 0) continue;
    const std::string detail = points(c.delta) + " points vs v" + std::to_string(item.baseline_version) + where +
                               " (" + fixed(c.confidence * 100, "%.0f") + "% interval [" + points(c.low) + ", " +
                               points(c.high) + "], n=" + std::to_string(c.rows) + ", McNemar p=" +
                               fixed(c.p_value) + ")";
    if (c.high < -g.max_drop / 100) failures.push_back("accuracy " + detail + ", a drop beyond max_drop " + fixed(g.max_drop, "%g"));
    else notes.push_back("accuracy " + detail);
  }
  item.verdict = failures.empty() ? "pass" : "fail";
  item.reasons = failures.empty() ? notes : failures;
  if (failures.empty() && item.baseline_version == 0) item.reasons.insert(item.reasons.begin(), "new adapter: no baseline");
}

}  // namespace mlops
