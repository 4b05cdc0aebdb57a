// Pipeline::evaluate: every candidate (staging version) against its baseline on the same held-out rows,
// at the candidate's data commit and at the baseline's, recorded on the candidate's run and version.
// Pipeline::preview: the same for candidates fitted in memory from a plan, recording nothing.
#include <cctype>
#include <map>
#include <optional>

#include "core/parallel.hpp"
#include "core/text.hpp"
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
    const std::string infix = ev.role == "baseline" ? tags::kEvalBaselineDataInfix : "";
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

// The commit of each evaluation ref the catalog names, resolved once per evaluation.
class EvalRefs {
 public:
  explicit EvalRefs(DoltSource& source) : source_(source) {}
  const std::string& commit(const CatalogEntry& e) {
    auto it = commits_.find(e.gate.eval_ref);
    if (it != commits_.end()) return it->second;
    try {
      return commits_[e.gate.eval_ref] = source_.resolve(e.gate.eval_ref);
    } catch (const Error& err) {
      throw NotFoundError("the evaluation ref " + detail::quote_for_message(e.gate.eval_ref) + " of adapter " + e.name +
                          " (catalog field eval_ref) does not resolve: " + std::string(err.detail()));
    }
  }

 private:
  DoltSource& source_;
  std::map<std::string, std::string> commits_;
};

// Adds w's evaluations: at the candidate's data commit, then at the baseline's when it differs, or only at
// the catalog's evaluation ref; each commit's rows are read once for every adapter that needs them.
void plan_evaluations(Work& w, std::size_t index, const std::string& candidate_commit, EvalRefs& refs,
                      std::map<std::string, std::vector<std::size_t>>& by_commit) {
  std::vector<std::pair<std::string, std::string>> roles = {{"candidate", candidate_commit}};
  if (!w.entry->gate.eval_ref.empty()) roles = {{"eval_ref", refs.commit(*w.entry)}};
  else if (w.baseline && tag_of(*w.baseline, tags::kDataCommit) != candidate_commit)
    roles.emplace_back("baseline", tag_of(*w.baseline, tags::kDataCommit));
  for (const auto& [role, commit] : roles) {
    if (commit.empty()) {
      const ModelVersion* v = role == "candidate" ? w.candidate : w.baseline;
      throw DataError((v ? "version " + std::to_string(v->version) + " of " : std::string("the candidate of ")) +
                      w.entry->name + " has no data commit tag (" + tags::kDataCommit + ")");
    }
    CommitEvaluation ev;
    ev.role = role;
    ev.commit = commit;
    w.item.evaluations.push_back(std::move(ev));
    if (w.entry->gate.eval_fraction > 0) by_commit[commit].push_back(index);
  }
}

// Reads each commit's evaluation rows and scores the candidate and the baseline of every adapter that needs
// them on the same rows.
void score_evaluations(DoltSource& source, std::vector<Work>& work,
                       const std::map<std::string, std::vector<std::size_t>>& by_commit) {
  std::vector<const CatalogEntry*> entries;
  for (const auto& w : work) entries.push_back(w.entry);
  for_evaluation_rows(
      source, entries, by_commit,
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
}

// Loads the candidate and baseline models that every adapter still being evaluated needs, from the tracker,
// on `threads` threads (each a download: with a thousand adapters, the evaluation's longest step). A
// failure is that adapter's verdict "error".
void load_models(MlflowTracker& tracker, std::vector<Work>& work, unsigned threads) {
  detail::parallel_for(work.size(), threads, [&](std::size_t i) {
    Work& w = work[i];
    if (!w.item.verdict.empty()) return;
    try {
      if (w.candidate && !w.candidate_model) w.candidate_model = load_model(tracker, *w.candidate);
      if (w.baseline && !w.baseline_model) w.baseline_model = load_model(tracker, *w.baseline);
    } catch (const Error& err) {
      w.item.verdict = "error";
      w.item.error = err.what();
    }
  });
}

// Applies the gate of every adapter that was scored; an error's message becomes its reason.
// @returns the indices of the adapters that were scored
std::vector<std::size_t> judge(std::vector<Work>& work) {
  std::vector<std::size_t> scored;
  for (std::size_t i = 0; i < work.size(); ++i) {
    Work& w = work[i];
    if (w.item.verdict.empty()) {
      apply_gate(w.item);
      scored.push_back(i);
    } else if (w.item.verdict == "error") {
      w.item.reasons = {w.item.error};
    }
  }
  return scored;
}

}  // namespace

EvaluationReport Pipeline::evaluate(const std::string& against, bool record) {
  const std::string alias = against.empty() ? options_.production_alias : against;
  if (alias == options_.staging_alias)
    throw ConfigError("cannot evaluate against the staging alias '" + alias + "': staging holds the candidates");
  auto versions = version_index(tracker_, catalog_);
  EvalRefs refs(source_);
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
    if (w.baseline && w.baseline->version == w.candidate->version) w.item.verdict = "unchanged";
  }
  load_models(tracker_, work, options_.record_threads);
  for (std::size_t i = 0; i < work.size(); ++i) {
    Work& w = work[i];
    if (!w.item.verdict.empty()) continue;
    try {
      plan_evaluations(w, i, tag_of(*w.candidate, tags::kDataCommit), refs, by_commit);
    } catch (const Error& err) {
      w.item.verdict = "error";
      w.item.error = err.what();
      w.item.evaluations.clear();
    }
  }
  score_evaluations(source_, work, by_commit);

  EvaluationReport report;
  report.against = alias;
  auto to_record = judge(work);
  if (!record) to_record.clear();
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

EvaluationReport Pipeline::preview(const Plan& plan, const std::string& against) {
  const std::string alias = against.empty() ? options_.production_alias : against;
  if (alias == options_.staging_alias)
    throw ConfigError("cannot preview against the staging alias '" + alias + "': staging holds the candidates");
  auto versions = version_index(tracker_, catalog_);
  const std::string code = plan.code_commit.empty() ? options_.code_commit : plan.code_commit;
  std::vector<Work> work;
  for (const auto& item : plan.items)
    if (item.stale) {
      Work w;
      w.entry = &catalog_.at(item.name);
      w.item.name = item.name;
      w.item.gate = w.entry->gate;
      w.baseline = with_alias(versions[item.name], alias);
      w.item.baseline_version = w.baseline ? w.baseline->version : 0;
      work.push_back(std::move(w));
    }
  // The candidates: each stale adapter fitted in memory on its training rows at the plan's commit.
  std::vector<const CatalogEntry*> entries;
  for (const auto& w : work) entries.push_back(w.entry);
  auto rows = read_slices(source_, entries, plan.commit);
  std::vector<AdapterSpec> specs;
  std::vector<std::size_t> fitted;  // work index of each spec
  for (std::size_t i = 0; i < work.size(); ++i) {
    Work& w = work[i];
    try {
      auto found = rows.find(w.entry->name);
      Dataset ds = found != rows.end() ? std::move(found->second) : source_.dataset(dataset_spec(*w.entry, plan.commit));
      AdapterSpec spec = adapter_spec(*w.entry, std::move(ds), code);
      spec.validate();
      specs.push_back(std::move(spec));
      fitted.push_back(i);
    } catch (const Error& err) {
      w.item.verdict = "error";
      w.item.error = err.what();
    }
  }
  auto trained = specs.empty() ? std::vector<TrainedAdapter>{} : trainer_.fit(specs);
  for (std::size_t k = 0; k < trained.size(); ++k) work[fitted[k]].candidate_model = std::move(trained[k].adapter);
  load_models(tracker_, work, options_.record_threads);
  EvalRefs refs(source_);
  std::map<std::string, std::vector<std::size_t>> by_commit;
  for (std::size_t k = 0; k < trained.size(); ++k) {
    Work& w = work[fitted[k]];
    if (!w.item.verdict.empty()) continue;
    try {
      plan_evaluations(w, fitted[k], plan.commit, refs, by_commit);
    } catch (const Error& err) {
      w.item.verdict = "error";
      w.item.error = err.what();
      w.item.evaluations.clear();
    }
  }
  score_evaluations(source_, work, by_commit);
  (void)judge(work);
  EvaluationReport report;
  report.against = alias;
  for (auto& w : work) report.items.push_back(std::move(w.item));
  return report;
}

}  // namespace mlops
