// Pipeline::evaluate_at: the models under an alias scored on a later data commit's evaluation rows, beside
// the rows of the commit they were trained at: the regular evaluation a schedule runs to see drift.
#include <cstdio>
#include <map>
#include <optional>

#include "mlops/adapter.hpp"
#include "mlops/error.hpp"
#include "mlops/evaluation.hpp"
#include "mlops/pipeline.hpp"
#include "mlops/tags.hpp"
#include "pipeline/internal.hpp"

namespace mlops {

using namespace pipeline;

namespace {

std::string three_places(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  return buf;
}

// The absolute gates (min_eval_rows, min_accuracy) on the evaluation at `at`; the change against the rows
// of the training commit is reported, not gated: those are other rows, not a paired comparison.
void drift_verdict(EvaluationItem& item, const std::string& at) {
  const GateSettings& g = item.gate;
  const CommitEvaluation& now = item.evaluations.front();
  const std::string where = " at " + at + " (" + short_hash(now.commit) + ")";
  const std::vector<std::string> failures = floor_failures(g, now.candidate, where);
  item.verdict = failures.empty() ? "pass" : "fail";
  item.reasons = failures;
  if (item.evaluations.size() == 2 && now.candidate.rows > 0 && item.evaluations[1].candidate.rows > 0) {
    const ClassificationMetrics& then = item.evaluations[1].candidate;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%+.1f", (now.candidate.accuracy - then.accuracy) * 100);
    item.reasons.push_back("accuracy " + three_places(now.candidate.accuracy) + where + " vs " +
                           three_places(then.accuracy) + " at its training data (" +
                           short_hash(item.evaluations[1].commit) + "): " + buf + " points");
  }
}

}  // namespace

EvaluationReport Pipeline::evaluate_at(const std::string& alias, const std::string& at) {
  const std::string wanted = alias.empty() ? options_.production_alias : alias;
  if (at.empty()) throw ConfigError("evaluate_at needs a data ref to evaluate at (a branch, tag or commit)");
  const std::string commit = source_.resolve(at);
  auto versions = version_index(tracker_, catalog_);
  std::vector<EvaluationItem> items(catalog_.size());
  std::vector<std::optional<Adapter>> models(catalog_.size());
  std::vector<const CatalogEntry*> entries;
  std::map<std::string, std::vector<std::size_t>> by_commit;  // data commit -> adapters to read it for
  for (std::size_t i = 0; i < catalog_.size(); ++i) {
    const CatalogEntry& e = catalog_.entries()[i];
    entries.push_back(&e);
    EvaluationItem& item = items[i];
    item.name = e.name;
    item.gate = e.gate;
    const ModelVersion* v = with_alias(versions[e.name], wanted);
    if (v == nullptr) {
      item.verdict = "no model";
      continue;
    }
    item.candidate_version = v->version;
    try {
      const std::string trained = tag_of(*v, tags::kDataCommit);
      if (trained.empty())
        throw DataError("version " + std::to_string(v->version) + " of " + e.name + " has no data commit tag (" +
                        tags::kDataCommit + ")");
      if (e.gate.eval_fraction <= 0)
        throw ConfigError(e.name + ": eval_fraction is 0, so it has no evaluation rows to score");
      models[i] = load_model(tracker_, *v);
      for (const auto& [role, c] : {std::pair<const char*, std::string>{"current", commit}, {"trained", trained}}) {
        if (role == std::string("trained") && c == commit) break;
        CommitEvaluation ev;
        ev.role = role;
        ev.commit = c;
        item.evaluations.push_back(std::move(ev));
        by_commit[c].push_back(i);
      }
    } catch (const Error& err) {
      item.verdict = "error";
      item.error = err.what();
      item.evaluations.clear();
    }
  }

  for_evaluation_rows(
      source_, entries, by_commit,
      [&](std::size_t i, const std::string& c, const Dataset& rows) {
        if (items[i].verdict == "error") return;
        for (auto& ev : items[i].evaluations)
          if (ev.commit == c) {
            ev.rows_digest = rows.content_digest();
            ev.candidate = score(*models[i], rows);
          }
      },
      [&](std::size_t i, const Error& err) {
        items[i].verdict = "error";
        items[i].error = err.what();
      });

  EvaluationReport report;
  report.against = wanted;
  report.at = commit;
  for (auto& item : items) {
    if (item.verdict.empty()) drift_verdict(item, at);
    else if (item.verdict == "error") item.reasons = {item.error};
    report.items.push_back(std::move(item));
  }
  return report;
}

}  // namespace mlops
