// Evaluation arithmetic: metrics of a model on labelled rows, the exact paired comparison, the gate.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "mlops/adapter.hpp"
#include "mlops/catalog.hpp"
#include "mlops/dataset.hpp"
#include "mlops/error.hpp"
#include "mlops/evaluation.hpp"

using namespace mlops;

namespace {

// A softmax classifier on one feature x: class "a" when x < 0, "b" when x > 0 (confident).
Adapter sign_model() {
  // W [1, 2], b [2]: logits (-10x, 10x).
  return Adapter(1, 0, {"a", "b"}, {-10.0F, 10.0F, 0.0F, 0.0F});
}

std::vector<char> rows_right(int right, int wrong) {
  std::vector<char> v(static_cast<std::size_t>(right), 1);
  v.insert(v.end(), static_cast<std::size_t>(wrong), 0);
  return v;
}

}  // namespace

TEST_CASE("score: accuracy, macro-F1, log loss and per-class recall, labels matched by text") {
  // Rows: x = -1 (a), -1 (a), 1 (b), 1 (a: wrong), 1 (c: a class the model never saw).
  const Dataset rows({-1, -1, 1, 1, 1}, 5, 1, {1, 1, 2, 1, 0}, {"c", "a", "b"});
  std::vector<char> right;
  const ClassificationMetrics m = score(sign_model(), rows, &right);
  CHECK(m.rows == 5);
  CHECK(right == std::vector<char>{1, 1, 1, 0, 0});
  CHECK(m.accuracy == doctest::Approx(0.6));
  CHECK(m.recall.at("a") == doctest::Approx(2.0 / 3));
  CHECK(m.recall.at("b") == doctest::Approx(1.0));
  CHECK(m.recall.at("c") == doctest::Approx(0.0));
  // F1: a = 2·2/(3+2) = 0.8, b = 2·1/(1+3) = 0.5, c = 0.
  CHECK(m.macro_f1 == doctest::Approx((0.8 + 0.5 + 0.0) / 3));
  // The unseen class costs -ln(1e-15); the wrong "a" costs about 20 nats.
  CHECK(m.log_loss > (-std::log(1e-15) + 19.0) / 5);
  CHECK(score(sign_model(), Dataset({}, 0, 1, {}, {"a"}), nullptr).rows == 0);
  CHECK_THROWS_AS(score(sign_model(), Dataset({1, 2}, 1, 2, {0}, {"a"})), DataError);
}

TEST_CASE("compare_paired: exact interval on the discordant rows, McNemar's p") {
  // The candidate loses 10 rows the baseline got right, wins none, of 20.
  auto cand = rows_right(10, 10), base = rows_right(20, 0);
  auto c = compare_paired(cand, base, 0.95);
  CHECK(c.rows == 20);
  CHECK(c.baseline_only == 10);
  CHECK(c.candidate_only == 0);
  CHECK(c.delta == doctest::Approx(-0.5));
  CHECK(c.p_value == doctest::Approx(2 * std::pow(0.5, 10)));
  CHECK(c.high < 0);
  CHECK(c.low == doctest::Approx(-0.5));
  // Clopper–Pearson upper bound of 0/10 at 95% is 1 - 0.025^(1/10) = 0.3085.
  CHECK(c.high == doctest::Approx((2 * (1 - std::pow(0.025, 0.1)) - 1) * 10 / 20).epsilon(1e-6));

  // One row of difference on a small set: an interval that contains 0.
  cand = rows_right(9, 1);
  base = rows_right(10, 0);
  c = compare_paired(cand, base, 0.95);
  CHECK(c.delta == doctest::Approx(-0.1));
  CHECK(c.low == doctest::Approx(-0.1));
  CHECK(c.high > 0);
  CHECK(c.p_value == doctest::Approx(1.0));

  // No discordant rows: no change.
  c = compare_paired(base, base, 0.9);
  CHECK(c.delta == 0);
  CHECK(c.low == 0);
  CHECK(c.high == 0);
  CHECK_THROWS_AS(compare_paired(cand, rows_right(1, 0), 0.95), ConfigError);
  CHECK_THROWS_AS(compare_paired(cand, base, 1.0), ConfigError);
}

TEST_CASE("apply_gate: absolute floor, minimum rows, and a drop beyond max_drop on the whole interval") {
  EvaluationItem item;
  item.name = "customer-1";
  item.candidate_version = 2;
  item.baseline_version = 1;
  CommitEvaluation ev;
  ev.role = "baseline";
  ev.commit = "abc";
  ev.candidate.rows = 20;
  ev.candidate.accuracy = 0.5;
  ev.comparison = compare_paired(rows_right(10, 10), rows_right(20, 0), 0.95);
  item.evaluations = {ev};

  apply_gate(item);
  CHECK(item.verdict == "fail");
  REQUIRE(item.reasons.size() == 1);
  CHECK(item.reasons[0].find("-50.0 points vs v1 on the baseline's data") != std::string::npos);
  CHECK(item.reasons[0].find("n=20") != std::string::npos);

  item.gate.max_drop = 60;  // the interval reaches -50 points at worst
  apply_gate(item);
  CHECK(item.verdict == "pass");

  item.gate.min_accuracy = 0.6;
  apply_gate(item);
  CHECK(item.verdict == "fail");
  CHECK(item.reasons[0].find("below min_accuracy 0.600") != std::string::npos);

  item.gate = {};
  item.gate.min_eval_rows = 21;
  item.gate.max_drop = 100;
  apply_gate(item);
  CHECK(item.verdict == "fail");
  CHECK(item.reasons[0].find("only 20 evaluation rows") != std::string::npos);

  // One row of difference never fails a small set.
  item.gate = {};
  item.evaluations[0].comparison = compare_paired(rows_right(9, 1), rows_right(10, 0), 0.95);
  item.evaluations[0].candidate.accuracy = 0.9;
  apply_gate(item);
  CHECK(item.verdict == "pass");
  CHECK(item.passed());
}

TEST_CASE("catalog gates: defaults, overrides, and typed errors naming adapter and field") {
  auto c = Catalog::from_json(R"({
    "defaults": {"table": "t", "label": "l", "text": "x", "max_drop": 2, "min_eval_rows": 10},
    "adapters": [{"name": "a"}, {"name": "b", "max_drop": 7.5, "eval_fraction": 0.3, "confidence": 0.9}]})");
  CHECK(c.at("a").gate.max_drop == 2);
  CHECK(c.at("a").gate.min_eval_rows == 10);
  CHECK(c.at("a").gate.eval_fraction == doctest::Approx(0.2));
  CHECK(c.at("b").gate.max_drop == 7.5);
  CHECK(c.at("b").gate.eval_fraction == doctest::Approx(0.3));
  CHECK(c.at("b").gate.confidence == doctest::Approx(0.9));
  CHECK(Catalog::from_json_value(c.to_json()).at("b").gate == c.at("b").gate);

  auto problems = [](const std::string& doc) {
    try {
      (void)Catalog::from_json(doc, "cat.json");
    } catch (const DataError& e) {
      return std::string(e.what());
    }
    return std::string("valid");
  };
  const std::string bad = problems(R"({"defaults": {"table": "t", "label": "l", "text": "x"},
    "adapters": [{"name": "a", "max_drop": -1, "min_accuracy": 1.5, "confidence": 1, "eval_fraction": 0.95,
                  "min_eval_rows": "ten"}]})");
  CHECK(bad.find("adapter 'a' (#1): field 'max_drop': must be in [0, 100], got -1") != std::string::npos);
  CHECK(bad.find("field 'min_accuracy': must be in [0, 1]") != std::string::npos);
  CHECK(bad.find("field 'confidence': must be in [0.5, 0.999]") != std::string::npos);
  CHECK(bad.find("field 'eval_fraction': must be in [0, 0.9]") != std::string::npos);
  CHECK(bad.find("field 'min_eval_rows': must be an integer") != std::string::npos);
}
