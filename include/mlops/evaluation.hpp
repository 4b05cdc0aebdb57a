/// @file evaluation.hpp
/// Scoring a candidate model version against the baseline it would replace, on the same held-out rows.
///
/// The evaluation rows of an adapter are the rows of its slice that a hash of the adapter's name and the
/// row's primary key holds out (catalog field `eval_fraction`, see GateSettings): they never train, and a
/// row stays on its side across data commits. Pipeline::evaluate reads them at the candidate's data commit
/// and at the baseline's (the data the baseline was judged on), scores both versions on each, compares
/// them row by row, and applies the adapter's gate.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlops/catalog.hpp"

namespace mlops {

class Adapter;
class Dataset;

/// How well one model version predicts one set of rows.
struct ClassificationMetrics {
  std::int64_t rows = 0;      ///< rows scored
  double accuracy = 0;        ///< share of rows whose predicted label is the true one (0 without rows)
  double macro_f1 = 0;        ///< unweighted mean of the per-class F1 over true and predicted classes
  double log_loss = 0;        ///< mean -ln p(true label), p clipped to [1e-15, 1] (0 for a label it never saw)
  std::map<std::string, double> recall;  ///< per true class label: share of its rows predicted right
  [[nodiscard]] nlohmann::json to_json() const;
};

/// Scores `adapter` on `rows` (matched by label text, so the two may order or hold classes differently).
/// @param correct when not null, receives one 0/1 per row: whether the prediction was right
/// @throws DataError when the dataset's width differs from the adapter's features
ClassificationMetrics score(const Adapter& adapter, const Dataset& rows, std::vector<char>* correct = nullptr);

/// A paired comparison of two models on the same rows: the change of accuracy with an exact interval.
struct PairedComparison {
  std::int64_t rows = 0;            ///< n: rows both models scored
  std::int64_t candidate_only = 0;  ///< rows the candidate gets right and the baseline wrong
  std::int64_t baseline_only = 0;   ///< rows the baseline gets right and the candidate wrong
  double delta = 0;                 ///< candidate accuracy minus baseline accuracy (a fraction)
  double low = 0, high = 0;         ///< interval of delta at `confidence`
  double confidence = 0.95;
  double p_value = 1;               ///< McNemar's exact two-sided test of equal accuracy
  [[nodiscard]] nlohmann::json to_json() const;
};

/// Compares per-row correctness (one 0/1 each, same rows in the same order). Only the discordant rows
/// carry information: given m of them, the candidate's share is binomial, and its Clopper–Pearson
/// interval at `confidence` gives the interval of delta = (candidate_only - baseline_only) / n. Exact, so a
/// small set gets a wide interval instead of a verdict that one row flips.
/// @throws ConfigError when the sizes differ or confidence is not in (0, 1)
PairedComparison compare_paired(std::span<const char> candidate_correct, std::span<const char> baseline_correct,
                                double confidence);

/// Both versions scored on the evaluation rows read at one data commit.
struct CommitEvaluation {
  std::string commit;                  ///< data commit the evaluation rows were read at
  /// "candidate" (the candidate's data), "baseline" (the baseline's) or "eval_ref" (the gate's evaluation
  /// ref); for Pipeline::evaluate_at "current" (the commit asked for) or "trained" (the model's training commit)
  std::string role;
  std::string rows_digest;             ///< content digest of the evaluation rows
  ClassificationMetrics candidate;
  ClassificationMetrics baseline;      ///< rows == 0 when there is no baseline
  PairedComparison comparison;         ///< rows == 0 when there is no baseline
  [[nodiscard]] nlohmann::json to_json() const;
};

/// One adapter's evaluation and the verdict of its gate.
struct EvaluationItem {
  std::string name;
  std::int64_t candidate_version = 0;  ///< the staging version (0: none)
  std::int64_t baseline_version = 0;   ///< the version under the gate's alias (0: none, a new adapter)
  /// "pass", "fail", "unchanged" (the candidate is the baseline), "no candidate" or "error"
  /// (Pipeline::evaluate_at: "pass", "fail", "no model" or "error")
  std::string verdict;
  std::vector<std::string> reasons;    ///< why it failed (or what a pass rests on), one line each
  /// at the candidate's commit first, then the baseline's; or only at the gate's eval_ref when it names one
  std::vector<CommitEvaluation> evaluations;
  GateSettings gate;
  std::string error;                   ///< the typed error's message when verdict is "error"
  [[nodiscard]] bool passed() const noexcept { return verdict == "pass" || verdict == "unchanged"; }
  [[nodiscard]] nlohmann::json to_json() const;
};

/// What Pipeline::evaluate found, one item per catalog adapter in catalog order.
struct EvaluationReport {
  std::string against;  ///< the baseline alias (evaluate_at(): the alias whose models were scored)
  std::string at;       ///< evaluate_at(): the data commit they were scored at (empty for evaluate())
  std::vector<EvaluationItem> items;
  [[nodiscard]] const EvaluationItem* find(const std::string& name) const noexcept;
  [[nodiscard]] std::size_t failed() const;  ///< items with verdict "fail" or "error"
  [[nodiscard]] nlohmann::json to_json() const;
};

/// The verdict of `gate` on one adapter's evaluations (fills verdict and reasons of `item`): fail when
/// any evaluation has fewer than min_eval_rows rows, a candidate accuracy below min_accuracy, or a
/// comparison whose whole interval lies more than max_drop points below zero.
void apply_gate(EvaluationItem& item);

}  // namespace mlops
