// Pipeline::compare_releases: the version changes between two releases with the metric changes that the
// recorded evaluations (Pipeline::evaluate) measured between each changed model's two versions.
#include <exception>
#include <optional>
#include <sstream>
#include <utility>

#include "mlops/error.hpp"
#include "mlops/pipeline.hpp"
#include "mlops/tags.hpp"
#include "pipeline/internal.hpp"

namespace mlops {

using namespace pipeline;
using nlohmann::json;

json EvaluatedChange::to_json() const {
  json m = json::object();
  for (const auto& [key, c] : metrics) m[key] = {{"old", c.old_value}, {"new", c.new_value}, {"delta", c.delta()}};
  json out = {{"data", data}, {"commit", commit}, {"rows", rows}, {"metrics", m}};
  if (has_interval)
    out["accuracy_interval"] = {{"low", low}, {"high", high}, {"confidence", confidence}, {"p_value", p_value}};
  return out;
}

json ReleaseChange::to_json() const {
  json evs = json::array();
  for (const auto& c : changes) evs.push_back(c.to_json());
  return {{"name", name},       {"old_version", old_version}, {"new_version", new_version},
          {"evaluation", evaluation}, {"verdict", verdict}, {"reasons", reasons}, {"changes", evs}};
}

json ReleaseComparison::to_json() const {
  json added = json::object(), removed = json::object(), changes = json::object();
  for (const auto& e : diff.added) added[e.name] = e.version;
  for (const auto& e : diff.removed) removed[e.name] = e.version;
  for (const auto& c : changed) changes[c.name] = c.to_json();
  return {{"from", from}, {"to", to}, {"added", added}, {"removed", removed}, {"changed", changes}};
}

namespace {

constexpr const char* kComparedMetrics[] = {"accuracy", "macro_f1", "log_loss"};

// The change measured at one data commit of an evaluation recorded on `evaluated` (the candidate then):
// `infix` selects the commit (empty: the candidate's data, kEvalBaselineDataInfix: the baseline's).
// `reversed` turns a candidate-against-baseline change around when the candidate is the old version.
std::optional<EvaluatedChange> recorded_change(const RunInfo& run, const std::string& infix, const std::string& commit,
                                               bool reversed) {
  const std::string eval = std::string(tags::kEvalMetricPrefix) + infix;
  const std::string base = std::string(tags::kBaselineEvalMetricPrefix) + infix;
  auto metric = [&](const std::string& key) -> std::optional<double> {
    auto it = run.metrics.find(key);
    return it == run.metrics.end() ? std::nullopt : std::optional<double>(it->second);
  };
  const auto rows = metric(eval + "rows");
  if (!rows || commit.empty()) return std::nullopt;
  EvaluatedChange c;
  c.data = infix.empty() != reversed ? "new" : "old";
  c.commit = commit;
  c.rows = static_cast<std::int64_t>(*rows);
  for (const char* name : kComparedMetrics) {
    auto cand = metric(eval + name), baseline = metric(base + name);
    if (!cand || !baseline) continue;
    c.metrics[name] = reversed ? MetricChange{*cand, *baseline} : MetricChange{*baseline, *cand};
  }
  auto low = metric(eval + "accuracy_delta_low"), high = metric(eval + "accuracy_delta_high");
  if (low && high) {
    c.has_interval = true;
    c.low = reversed ? -*high : *low;
    c.high = reversed ? -*low : *high;
    c.p_value = metric(eval + "mcnemar_p").value_or(1.0);
  }
  return c;
}

// Whether `v` records an evaluation against version `baseline`.
bool evaluated_against(const ModelVersion& v, std::int64_t baseline) {
  return tag_of(v, tags::kEvalBaselineVersion) == std::to_string(baseline);
}

// Fills the evaluation of one changed model: recorded on the new version against the old one, or (a
// rollback) on the old version against the new one. A version deleted since has no evaluation.
void read_evaluation(MlflowTracker& tracker, ReleaseChange& change) {
  std::optional<ModelVersion> evaluated;
  try {
    ModelVersion v = tracker.get_model_version(change.name, change.new_version);
    if (evaluated_against(v, change.old_version)) {
      change.evaluation = "forward";
      evaluated = std::move(v);
    } else if (ModelVersion old = tracker.get_model_version(change.name, change.old_version);
               evaluated_against(old, change.new_version)) {
      change.evaluation = "reversed";
      evaluated = std::move(old);
    }
  } catch (const NotFoundError&) {
    return;
  }
  if (!evaluated) return;
  const bool reversed = change.evaluation == "reversed";
  if (!reversed) {
    change.verdict = tag_of(*evaluated, tags::kEvalVerdict);
    std::istringstream reasons(tag_of(*evaluated, tags::kEvalReasons));
    for (std::string line; std::getline(reasons, line);)
      if (!line.empty()) change.reasons.push_back(line);
  }
  const json commits = json::parse(tag_of(*evaluated, tags::kEvalCommits), nullptr, false);
  if (!commits.is_object())
    throw DataError("version " + std::to_string(evaluated->version) + " of " + change.name + ": tag " +
                    tags::kEvalCommits + " is not a JSON object");
  double confidence = 0;
  try {
    const std::string text = tag_of(*evaluated, tags::kEvalConfidence);
    if (!text.empty()) confidence = std::stod(text);
  } catch (const std::exception&) {
    confidence = 0;  // an unreadable level is shown as unknown
  }
  const RunInfo run = tracker.get_run(evaluated->run_id);
  for (const auto& [infix, role] : {std::pair<std::string, const char*>{"", "candidate"},
                                    {tags::kEvalBaselineDataInfix, "baseline"}}) {
    const auto found = commits.find(role);
    const std::string commit = found != commits.end() && found->is_string() ? found->get<std::string>() : "";
    if (auto c = recorded_change(run, infix, commit, reversed)) {
      if (c->has_interval) c->confidence = confidence;
      change.changes.push_back(std::move(*c));
    }
  }
  // The new version's data first.
  if (reversed && change.changes.size() == 2) std::swap(change.changes[0], change.changes[1]);
}

}  // namespace

ReleaseComparison Pipeline::compare_releases(const std::string& from_md5, const std::string& to_md5) {
  ReleaseRecord from = get_release(from_md5), to = get_release(to_md5);
  ReleaseComparison out;
  out.from = from.md5;
  out.to = to.md5;
  out.diff = from.manifest.diff(to.manifest);
  for (const auto& c : out.diff.changed) {
    ReleaseChange change;
    change.name = c.name;
    change.old_version = c.old_version;
    change.new_version = c.new_version;
    out.changed.push_back(std::move(change));
  }
  std::vector<std::exception_ptr> failures(out.changed.size());
  parallel_for(out.changed.size(), options_.record_threads, [&](std::size_t k) {
    try {
      read_evaluation(tracker_, out.changed[k]);
    } catch (...) {  // on a worker thread: nothing may escape; rethrown, with its type, on the caller
      failures[k] = std::current_exception();
    }
    return true;
  });
  for (const auto& failure : failures)
    if (failure) std::rethrow_exception(failure);
  return out;
}

}  // namespace mlops
