// Pipeline::evaluate: every candidate (staging version) against its baseline on the same held-out rows,
// at the candidate's data commit and at the baseline's, recorded on the candidate's run and version.
#include <cctype>
#include <map>
#include <optional>

#include "mlflow/model_dir.hpp"
#include "mlops/adapter.hpp"
#include "mlops/error.hpp"
#include "mlops/evaluation.hpp"
#include "mlops/pipeline.hpp"
#include "mlops/tags.hpp"
#include "pipeline/internal.hpp"

namespace mlops {

using namespace pipeline;
using nlohmann::json;

namespace pipeline {

Adapter load_model(MlflowTracker& tracker, const ModelVersion& v) {
  const std::string uri = v.source + "/" + model_dir::kAdapterWeights;
  return Adapter::from_bytes(tracker.read_artifact(uri), uri);
}

void for_evaluation_rows(DoltSource& source, const std::vector<const CatalogEntry*>& entries,
                         const std::map<std::string, std::vector<std::size_t>>& wanted,
                         const std::function<void(std::size_t, const std::string&, const Dataset&)>& use,
                         const std::function<void(std::size_t, const Error&)>& failed) {
  for (const auto& [commit, indices] : wanted) {
    std::vector<const CatalogEntry*> group;
    for (std::size_t i : indices) group.push_back(entries[i]);
    auto together = read_slices(source, group, commit, HoldoutSide::Evaluation);
    for (std::size_t i : indices) {
      try {
        auto found = together.find(entries[i]->name);
        const Dataset rows = found != together.end()
                                 ? std::move(found->second)
                                 : source.dataset(dataset_spec(*entries[i], commit, HoldoutSide::Evaluation));
        use(i, commit, rows);
      } catch (const Error& err) {
        failed(i, err);
      }
    }
  }
}

}  // namespace pipeline

namespace {

// One adapter being evaluated: its catalog entry, the two versions and their models.
struct Work {
  const CatalogEntry* entry = nullptr;
  const ModelVersion* candidate = nullptr;
  const ModelVersion* baseline = nullptr;
  std::optional<Adapter> candidate_model, baseline_model;
  EvaluationItem item;
};

// A class label as part of a metric key (MLflow allows letters, digits, '_', '-', '.', ' ' and '/').
std::string metric_label(const std::string& label) {
  std::string out;
  for (char c : label) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.') ? c : '_';
  return out.substr(0, 200);
}

void add_metrics(std::map<std::string, double>& out, const std::string& prefix, const ClassificationMetrics& m) {
  out[prefix + "rows"] = static_cast<double>(m.rows);
  if (m.rows == 0) return;
  out[prefix + "accuracy"] = m.accuracy;
  out[prefix + "macro_f1"] = m.macro_f1;
  out[prefix + "log_loss"] = m.log_loss;
  for (const auto& [label, recall] : m.recall) out[prefix + "recall_" + metric_label(label)] = recall;
}

// The eval_* and baseline_eval_* metrics of one adapter's evaluations.
std::map<std::string, double> run_metrics(const EvaluationItem& item) {
  std::map<std::string, double> out;
  for (const auto& ev : item.evaluations) {
    const std::string infix = ev.role == "candidate" ? "" : tags::kEvalBaselineDataInfix;
    const std::string eval = std::string(tags::kEvalMetricPrefix) + infix;
    add_metrics(out, eval, ev.candidate);
    if (item.baseline_version == 0) continue;
    add_metrics(out, std::string(tags::kBaselineEvalMetricPrefix) + infix, ev.baseline);
    if (ev.comparison.rows == 0) continue;
    out[eval + "accuracy_delta"] = ev.comparison.delta;
    out[eval + "accuracy_delta_low"] = ev.comparison.low;
    out[eval + "accuracy_delta_high"] = ev.comparison.high;
    out[eval + "mcnemar_p"] = ev.comparison.p_value;
  }
  return out;
}

void record_item(MlflowTracker& tracker, const std::string& against, const Work& w) {
  const EvaluationItem& item = w.item;
  tracker.log_metrics(w.candidate->run_id, run_metrics(item));
  json commits = json::object(), digests = json::object();
  for (const auto& ev : item.evaluations) {
    commits[ev.role] = ev.commit;
    digests[ev.role] = ev.rows_digest;
  }
  std::string reasons;
  for (const auto& r : item.reasons) reasons += (reasons.empty() ? "" : "\n") + r;
  const std::map<std::string, std::string> version_tags = {
      {tags::kEvalAgainst, against},
      {tags::kEvalBaselineVersion, std::to_string(item.baseline_version)},
      {tags::kEvalCommits, commits.dump()},
      {tags::kEvalRowsDigest, digests.dump()},
      {tags::kEvalVerdict, item.verdict},
      {tags::kEvalReasons, reasons.substr(0, 5000)},
      {tags::kEvalConfidence, json(item.gate.confidence).dump()}};
  for (const auto& [key, value] : version_tags) tracker.set_model_version_tag(item.name, item.candidate_version, key, value);
}

}  // namespace

EvaluationReport Pipeline::evaluate(const std::string& against, bool record) {
  const std::string alias = against.empty() ? options_.production_alias : against;
  if (alias == options_.staging_alias)
    throw ConfigError("cannot evaluate against the staging alias '" + alias + "': staging holds the candidates");
  auto versions = version_index(tracker_, catalog_);
  std::vector<Work> work(catalog_.size());
  std::map<std::string, std::vector<std::size_t>> by_commit;  // data commit -> adapters to read it for
  for (std::size_t i = 0; i < catalog_.size(); ++i) {
    Work& w = work[i];
    w.entry = &catalog_.entries()[i];
    w.item.name = w.entry->name;
    w.item.gate = w.entry->gate;
    w.candidate = with_alias(versions[w.entry->name], options_.staging_alias);
    w.baseline = with_alias(versions[w.entry->name], alias);
    w.item.baseline_version = w.baseline ? w.baseline->version : 0;
    if (w.candidate == nullptr) {
      w.item.verdict = "no candidate";
      continue;
    }
    w.item.candidate_version = w.candidate->version;
    if (w.baseline && w.baseline->version == w.candidate->version) {
      w.item.verdict = "unchanged";
      continue;
    }
    try {
      w.candidate_model = load_model(tracker_, *w.candidate);
      if (w.baseline) w.baseline_model = load_model(tracker_, *w.baseline);
      // The candidate's data first; then the data the baseline was judged on, when it differs.
      std::vector<std::pair<std::string, std::string>> roles = {{"candidate", tag_of(*w.candidate, tags::kDataCommit)}};
      if (w.baseline && tag_of(*w.baseline, tags::kDataCommit) != roles.front().second)
        roles.emplace_back("baseline", tag_of(*w.baseline, tags::kDataCommit));
      for (const auto& [role, commit] : roles) {
        if (commit.empty())
          throw DataError("version " + std::to_string(role == "candidate" ? w.candidate->version : w.baseline->version) +
                          " of " + w.entry->name + " has no data commit tag (" + tags::kDataCommit + ")");
        CommitEvaluation ev;
        ev.role = role;
        ev.commit = commit;
        w.item.evaluations.push_back(std::move(ev));
        if (w.entry->gate.eval_fraction > 0) by_commit[commit].push_back(i);
      }
    } catch (const Error& err) {
      w.item.verdict = "error";
      w.item.error = err.what();
      w.item.evaluations.clear();
    }
  }

  // Evaluation rows: per commit, slices `column = ?` of one table in one scan, the rest one by one.
  std::vector<const CatalogEntry*> entries;
  for (const auto& w : work) entries.push_back(w.entry);
  for_evaluation_rows(
      source_, entries, by_commit,
      [&](std::size_t i, const std::string& commit, const Dataset& rows) {
        Work& w = work[i];
        if (w.item.verdict == "error") return;
        for (auto& ev : w.item.evaluations) {
          if (ev.commit != commit) continue;
          ev.rows_digest = rows.content_digest();
          std::vector<char> cand_right, base_right;
          ev.candidate = score(*w.candidate_model, rows, &cand_right);
          if (w.baseline_model) {
            ev.baseline = score(*w.baseline_model, rows, &base_right);
            ev.comparison = compare_paired(cand_right, base_right, w.entry->gate.confidence);
          }
        }
      },
      [&](std::size_t i, const Error& err) {
        work[i].item.verdict = "error";
        work[i].item.error = err.what();
      });

  EvaluationReport report;
  report.against = alias;
  std::vector<std::size_t> to_record;
  for (std::size_t i = 0; i < work.size(); ++i) {
    Work& w = work[i];
    if (w.item.verdict.empty()) {
      apply_gate(w.item);
      if (record) to_record.push_back(i);
    } else if (w.item.verdict == "error") {
      w.item.reasons = {w.item.error};
    }
  }
  std::vector<std::string> failures(to_record.size());
  parallel_for(to_record.size(), options_.record_threads, [&](std::size_t k) {
    try {
      record_item(tracker_, alias, work[to_record[k]]);
    } catch (const std::exception& err) {  // on a worker thread: nothing may escape
      failures[k] = err.what();
    }
    return true;
  });
  for (std::size_t k = 0; k < to_record.size(); ++k)
    if (!failures[k].empty())
      throw TrackingError("recording the evaluation of " + work[to_record[k]].item.name + ": " + failures[k]);
  for (auto& w : work) report.items.push_back(std::move(w.item));
  return report;
}

}  // namespace mlops
