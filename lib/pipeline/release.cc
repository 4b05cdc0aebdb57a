// Releases: recording a manifest in MLflow, moving the aliases to it, rolling back, listing releases.
#include <algorithm>
#include <chrono>
#include <exception>
#include <memory>
#include <mutex>
#include <set>

#include "core/text.hpp"
#include "mlops/error.hpp"
#include "mlops/pipeline.hpp"
#include "mlops/tags.hpp"
#include "pipeline/internal.hpp"
#include "pipeline/release_lease.hpp"

namespace mlops {

using namespace pipeline;

namespace pipeline {

std::vector<RunInfo> release_runs(MlflowTracker& tracker, const std::string& experiment) {
  std::vector<RunInfo> runs;
  for (auto& run : tracker.search_runs({tracker.experiment_id(experiment)}, "", 1000))
    if (!run.tag(tags::kReleaseMd5).empty()) runs.push_back(std::move(run));
  std::sort(runs.begin(), runs.end(), [](const RunInfo& a, const RunInfo& b) {
    return a.start_time != b.start_time ? a.start_time > b.start_time
                                        : a.tag(tags::kReleaseMd5) < b.tag(tags::kReleaseMd5);
  });
  return runs;
}

ReleaseRecord record_from_run(MlflowTracker& tracker, const RunInfo& run) {
  ReleaseRecord r;
  r.md5 = run.tag(tags::kReleaseMd5);
  r.image = run.tag(tags::kReleaseImage);
  r.previous = run.tag(tags::kReleasePrevious);
  r.state = run.tag(tags::kReleaseState);
  r.run_id = run.run_id;
  r.time_ms = run.start_time;
  const std::string uri = run.artifact_uri + "/" + tags::kManifestArtifact;
  try {
    r.manifest = ReleaseManifest::from_json(tracker.read_artifact(uri), r.md5);
  } catch (const DataError& e) {
    throw DataError(uri + ": " + std::string(e.detail()));
  } catch (const IntegrityError& e) {
    throw IntegrityError(uri + ": " + std::string(e.detail()));
  }
  return r;
}

}  // namespace pipeline

std::vector<ReleaseRecord> Pipeline::releases() {
  std::vector<ReleaseRecord> out;
  for (const auto& run : release_runs(tracker_, options_.releases_experiment)) out.push_back(record_from_run(tracker_, run));
  return out;
}

ReleaseRecord Pipeline::get_release(const std::string& md5) {
  if (md5.size() < 6) throw ConfigError("release id '" + md5 + "' is too short: give at least 6 characters");
  const std::string exp = tracker_.experiment_id(options_.releases_experiment);
  std::vector<RunInfo> found;
  for (auto& run : tracker_.search_runs({exp}, "", 1000)) {
    const std::string m = run.tag(tags::kReleaseMd5);
    if (!m.empty() && m.rfind(md5, 0) == 0) found.push_back(std::move(run));
  }
  if (found.empty()) throw NotFoundError("no release with MD5 " + detail::quote_for_message(md5));
  std::set<std::string> distinct;
  for (const auto& r : found) distinct.insert(r.tag(tags::kReleaseMd5));
  if (distinct.size() > 1) throw ConfigError("release id '" + md5 + "' is ambiguous: give more characters");
  return record_from_run(tracker_, found.front());
}

ManifestDiff Pipeline::diff_releases(const std::string& from_md5, const std::string& to_md5) {
  return get_release(from_md5).manifest.diff(get_release(to_md5).manifest);
}

ReleaseManifest Pipeline::current_manifest() {
  auto versions = version_index(tracker_, catalog_);
  ReleaseManifest::Entries entries;
  for (const auto& e : catalog_.entries())
    if (const ModelVersion* v = with_alias(versions[e.name], options_.production_alias)) entries[e.name] = v->version;
  return ReleaseManifest(std::move(entries));
}

namespace {

// The repository part of an image reference (without the tag).
std::string repository_of(const std::string& image) {
  auto colon = image.rfind(':');
  auto slash = image.rfind('/');
  if (colon == std::string::npos || (slash != std::string::npos && colon < slash)) return image;
  return image.substr(0, colon);
}

// Finds the release run of `manifest`, or records a new one (state "recording"): a re-run after a
// failure finds the same run instead of adding another.
ReleaseRecord record_release(MlflowTracker& tracker, const std::string& experiment, const ReleaseManifest& manifest,
                             const std::string& image, const std::string& previous) {
  const std::string exp = tracker.experiment_id(experiment);
  for (const auto& run : tracker.search_runs({exp}, "", 1000))
    if (run.tag(tags::kReleaseMd5) == manifest.md5()) return record_from_run(tracker, run);

  Run run = tracker.start_run(experiment, manifest.md5(),
                              {{tags::kReleaseMd5, manifest.md5()},
                               {tags::kReleaseImage, image},
                               {tags::kReleasePrevious, previous},
                               {tags::kReleaseState, tags::kStateRecording},
                               {tags::kReleaseModels, std::to_string(manifest.size())}});
  run.log_bytes(manifest.to_json(), tags::kManifestArtifact);
  run.end(RunStatus::Finished);
  ReleaseRecord r;
  r.md5 = manifest.md5();
  r.image = image;
  r.previous = previous;
  r.state = tags::kStateRecording;
  r.run_id = run.id();
  r.time_ms = now_ms();
  r.manifest = manifest;
  return r;
}

// Releases and rollbacks of one release experiment run one at a time.
std::unique_ptr<detail::ReleaseLease> take_lease(MlflowTracker& tracker, const PipelineOptions& o) {
  auto ms = [](double s) { return std::chrono::milliseconds(static_cast<std::int64_t>(s * 1000)); };
  return std::make_unique<detail::ReleaseLease>(tracker, o.releases_experiment, ms(o.release_lease_seconds),
                                                ms(o.release_wait_seconds));
}

// Before a release is called complete: the lease is still this process's, and every catalog model's
// alias points where the manifest says (no alias where it names none).
void verify_aliases(MlflowTracker& tracker, const Catalog& catalog, const std::string& alias,
                    const ReleaseManifest& target, detail::ReleaseLease& lease) {
  lease.check_held();
  auto now = version_index(tracker, catalog);
  std::vector<std::string> wrong;
  for (const auto& e : catalog.entries()) {
    const ModelVersion* current = with_alias(now[e.name], alias);
    const std::int64_t have = current ? current->version : 0;
    const std::int64_t want = target.contains(e.name) ? target.at(e.name) : 0;
    if (have != want)
      wrong.push_back(detail::quote_for_message(e.name) + " is at " + (have ? "v" + std::to_string(have) : "none") +
                      ", the manifest says " + (want ? "v" + std::to_string(want) : "none"));
  }
  if (!wrong.empty())
    throw ConflictError("the '" + alias + "' aliases changed while release " + target.md5() + " was applied (" +
                        std::to_string(wrong.size()) + " differ, e.g. " + wrong.front() +
                        "): it is not complete; run the command again");
}

// Moves the production aliases to `target` (removing it from catalog models not in `target`), recording
// what moved and, after a failure, what is still pending. Marks the release complete when nothing is.
// With `staging` set (rollbacks), a staging alias pointing elsewhere is moved to the released version
// too, so the next release does not ship the withdrawn candidate again. Every write is fenced by the
// lease (release_lease.hpp); losing the lease is a ConflictError, never a false "complete".
void apply_release(MlflowTracker& tracker, const Catalog& catalog, const std::string& alias,
                   VersionIndex& versions, ReleaseReport& report, detail::ReleaseLease& lease,
                   unsigned threads, const std::string& staging = "") {
  const ReleaseManifest& target = report.release.manifest;
  struct Move {
    std::string name;
    std::int64_t want = 0;  // 0: delete the alias
    std::int64_t have = 0;
  };
  std::vector<Move> todo, staging_todo;
  for (const auto& e : catalog.entries()) {
    const ModelVersion* current = with_alias(versions[e.name], alias);
    const std::int64_t have = current ? current->version : 0;
    const std::int64_t want = target.contains(e.name) ? target.at(e.name) : 0;
    if (have != want) todo.push_back({e.name, want, have});
    if (!staging.empty() && want != 0) {
      const ModelVersion* staged = with_alias(versions[e.name], staging);
      if (staged != nullptr && staged->version != want) staging_todo.push_back({e.name, want, staged->version});
    }
  }
  lease.record_target(report.release.run_id);  // before any alias moves: what a late write is put back to
  // After a failure no further alias is moved; those already under way finish and count as moved.
  std::vector<char> moved(todo.size(), 0);
  std::string failure;
  std::exception_ptr lease_lost;
  std::mutex error_mutex;
  parallel_for(todo.size(), threads, [&](std::size_t i) {
    try {
      lease.move_alias(todo[i].name, alias, todo[i].want, todo[i].have);
      moved[i] = 1;
      return true;
    } catch (const std::exception& err) {  // on a worker thread: nothing may escape
      std::lock_guard lock(error_mutex);
      if (failure.empty()) failure = err.what();
      if (!lease_lost && dynamic_cast<const ConflictError*>(&err)) lease_lost = std::current_exception();
      return false;
    }
  });
  for (std::size_t i = 0; i < todo.size(); ++i) (moved[i] ? report.moved : report.pending).push_back(todo[i].name);
  if (lease_lost) std::rethrow_exception(lease_lost);
  if (!failure.empty()) {
    report.error = failure;
    return;
  }
  try {
    for (const auto& m : staging_todo) lease.move_alias(m.name, staging, m.want, m.have, false);
  } catch (const ConflictError&) {
    throw;
  } catch (const Error& err) {
    report.error = err.what();
    return;
  }
  verify_aliases(tracker, catalog, alias, target, lease);  // a ConflictError: never a false "complete"
  try {
    lease.set_run_tag(report.release.run_id, tags::kReleaseState, tags::kStateComplete, report.release.state);
    report.release.state = tags::kStateComplete;
  } catch (const ConflictError&) {
    throw;
  } catch (const Error& err) {
    report.error = err.what();
  }
}

}  // namespace

ReleaseReport Pipeline::release(const std::string& image_repository, const std::string& alias, GateMode gate) {
  validate_docker_repository(image_repository);
  const std::string target = alias.empty() ? options_.production_alias : alias;
  if (target == options_.staging_alias)
    throw ConfigError("cannot release to the staging alias '" + target + "': staging is what gets released");
  auto lease = take_lease(tracker_, options_);
  ReleaseReport report;
  report.gate = gate_mode_name(gate);
  const EvaluationReport evaluation = gate == GateMode::Off ? EvaluationReport{} : evaluate(target);
  auto versions = version_index(tracker_, catalog_);
  ReleaseManifest::Entries entries;
  for (const auto& e : catalog_.entries()) {
    const ModelVersion* v = with_alias(versions[e.name], options_.staging_alias);
    const ModelVersion* current = with_alias(versions[e.name], target);
    const EvaluationItem* judged = evaluation.find(e.name);
    if (v != nullptr && v != current && judged != nullptr && judged->candidate_version == v->version &&
        !judged->passed()) {
      HeldBack h{e.name, v->version, current ? current->version : 0, judged->verdict, judged->reasons};
      if (gate == GateMode::Enforce) {
        v = current;  // held back: the released version stays, a new adapter stays out
        report.held_back.push_back(std::move(h));
      } else {
        report.warned.push_back(std::move(h));
      }
    }
    if (v == nullptr) v = current;
    if (v != nullptr) entries[e.name] = v->version;
    if (v != nullptr && v != current) report.promoted.push_back(e.name);
  }
  if (entries.empty() && !report.held_back.empty())
    throw DataError("nothing to release: every candidate failed its gate and none has a '" + target +
                    "' version; e.g. " + report.held_back.front().name + ": " +
                    (report.held_back.front().reasons.empty() ? "" : report.held_back.front().reasons.front()));
  if (entries.empty())
    throw NotFoundError("nothing to release: no adapter of the catalog has a '" + options_.staging_alias +
                        "' or '" + target + "' version");
  ReleaseManifest manifest(std::move(entries));
  std::string previous;
  for (const auto& run : release_runs(tracker_, options_.releases_experiment))
    if (run.tag(tags::kReleaseMd5) != manifest.md5() && run.tag(tags::kReleaseState) == tags::kStateComplete) {
      previous = run.tag(tags::kReleaseMd5);
      break;
    }
  report.release = record_release(tracker_, options_.releases_experiment, manifest,
                                  manifest.image_tag(image_repository), previous);
  apply_release(tracker_, catalog_, target, versions, report, *lease, options_.record_threads);
  return report;
}

ReleaseReport Pipeline::rollback_release(const std::string& md5) {
  auto lease = take_lease(tracker_, options_);
  ReleaseReport report;
  report.release = get_release(md5);
  auto versions = version_index(tracker_, catalog_);
  apply_release(tracker_, catalog_, options_.production_alias, versions, report, *lease, options_.record_threads,
                options_.staging_alias);
  return report;
}

ReleaseReport Pipeline::rollback_model(const std::string& name, std::int64_t version) {
  (void)catalog_.at(name);
  (void)tracker_.get_model_version(name, version);  // NotFoundError when it does not exist
  auto lease = take_lease(tracker_, options_);
  const auto runs = release_runs(tracker_, options_.releases_experiment);
  if (runs.empty()) throw NotFoundError("no release recorded yet: release before rolling a model back");
  ReleaseManifest manifest = current_manifest().with_version(name, version);
  ReleaseReport report;
  report.release = record_release(tracker_, options_.releases_experiment, manifest,
                                  manifest.image_tag(repository_of(runs.front().tag(tags::kReleaseImage))),
                                  runs.front().tag(tags::kReleaseMd5));
  auto versions = version_index(tracker_, catalog_);
  apply_release(tracker_, catalog_, options_.production_alias, versions, report, *lease, options_.record_threads,
                options_.staging_alias);
  return report;
}

}  // namespace mlops
