/// @file pipeline.hpp
/// The platform's main job: which adapters are stale, train them (a shard at a time), register every
/// version with its lineage, release a set of versions under one MD5, and roll back.
///
/// State lives in the real systems, never in a local file: the data and its commits in Dolt, every run,
/// version, alias and release in MLflow. Any machine (a CI runner, a GPU box, a laptop) that points at
/// the same two URIs sees the same plan and the same releases.
///
/// Conventions in MLflow (every name is spelled in mlops/tags.hpp):
/// - each adapter is a registered model of the same name; training runs go to `options.experiment`;
/// - a model version carries the fingerprint (SHA-256 of adapter, data commit, code commit,
///   hyperparameters and slice), the data and code commits, the hyperparameters and slice (JSON) and rows;
/// - the alias `staging` marks the newest trained version, `production` the released one;
/// - each release is a run named by its MD5 in the experiment `mlops-releases`, with the canonical
///   manifest as the artifact `manifest.json` and its md5, image, previous release and state as tags.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlops/catalog.hpp"
#include "mlops/evaluation.hpp"
#include "mlops/manifest.hpp"
#include "mlops/tags.hpp"

namespace mlops {

class DoltSource;
class MlflowTracker;
class CudaTrainer;
struct ModelVersion;

/// Reads a catalog versioned with the data: a table (default `adapters`) with a text column `name` and a
/// text column `config` holding a JSON object of the entry's other fields; the row named `*` holds the
/// defaults. Read at `at`, so a plan at a commit uses the catalog of that commit.
/// @throws NotFoundError if the table does not exist; DataError listing every invalid entry
Catalog load_catalog_table(DoltSource& source, const std::string& at = "HEAD", const std::string& table = "adapters");

/// Progress of Pipeline::train: stage ("load", "fit" or "record"), work done, work planned.
using TrainProgress = std::function<void(const std::string& stage, std::size_t done, std::size_t total)>;

/// Settings of a Pipeline.
struct PipelineOptions {
  std::string experiment = tags::kAdaptersExperiment;           ///< MLflow experiment of the training runs
  std::string releases_experiment = tags::kReleasesExperiment;  ///< MLflow experiment of the release records
  std::string staging_alias = tags::kStagingAlias;              ///< set on every newly trained version
  std::string production_alias = tags::kProductionAlias;        ///< moved by release() and rollback()
  std::string code_commit;          ///< commit of the training code (empty: detected from git / GitHub Actions)
  bool retrain_on_code_change = false;  ///< plan(): a different code commit makes an adapter stale
  /// Requests to MLflow at once: adapters recorded by train(), aliases moved by release() and rollback().
  /// 8 was the fastest of 1, 2, 4 and 8 for 1,000 adapters against a 4-worker server (bench/pipeline).
  unsigned record_threads = 8;
  /// release() and rollback() hold a lease on the release experiment, recorded in MLflow, with this
  /// time-to-live in seconds: the holder renews it every third of it while it works, and a holder that
  /// is killed, paused or cut off from MLflow for this long loses it (its further writes are refused or
  /// undone), so it blocks the others no longer. Expiry is judged by MLflow's clock.
  double release_lease_seconds = 60;
  /// How long release() and rollback() wait for another's lease to end before a ConflictError.
  double release_wait_seconds = 600;
};

/// One adapter's state in a plan.
struct PlanItem {
  std::string name;
  bool stale = false;
  std::vector<std::string> reasons;  ///< why it is stale: "never trained", "data changed (+1 ~2 -0 rows)", ...
  std::int64_t production_version = 0;  ///< 0 when it has none
  std::string trained_commit;           ///< data commit of the production version (empty when none)
  std::int64_t rows = 0;                ///< rows of its slice at the plan's commit (counted for stale adapters)
  std::int64_t added = 0, modified = 0, removed = 0;  ///< slice diff since `trained_commit`
  /// A staging version newer than production, trained at this plan's commit, code and configuration
  /// (train() would reuse it): the adapter is not stale, it awaits a release. 0 when there is none.
  std::int64_t staging_version = 0;
  bool awaiting_release = false;  ///< trained, awaiting release (see `staging_version`)
  [[nodiscard]] nlohmann::json to_json() const;
};

/// Which adapters need training at one data commit.
struct Plan {
  std::string ref;                 ///< the ref asked for, e.g. "main"
  std::string commit;              ///< the resolved data commit every read of train() uses
  std::string code_commit;         ///< the training code's commit
  std::vector<PlanItem> items;     ///< one per catalog entry, in catalog order

  [[nodiscard]] std::vector<const PlanItem*> stale() const;
  /// The stale adapters of shard `index` of `count`: deterministic, balanced by row counts (largest first
  /// onto the least-loaded shard; ties by name), the same on every machine for the same plan.
  /// @throws ConfigError unless 0 <= index < count
  [[nodiscard]] std::vector<const PlanItem*> shard(int index, int count) const;
  [[nodiscard]] nlohmann::json to_json() const;
  static Plan from_json(const nlohmann::json& j);
};

/// What train() did with one adapter.
struct TrainedItem {
  std::string name;
  std::string status;          ///< "trained", "reused" (a version with the same fingerprint existed) or "failed"
  std::int64_t version = 0;    ///< registered version (0 when failed)
  std::string run_id;
  std::string error;           ///< the typed error's message when failed
  double val_accuracy = 0;     ///< final validation accuracy (trained only)
  [[nodiscard]] nlohmann::json to_json() const;
};

struct TrainReport {
  std::string commit;
  int shard_index = 0, shard_count = 1;
  std::vector<TrainedItem> items;
  double load_seconds = 0;    ///< reading the datasets from Dolt
  double fit_seconds = 0;     ///< the batched fit
  double record_seconds = 0;  ///< MLflow: runs, metrics, artifacts, registration, aliases
  /// Runs of this shard's adapters that an earlier, interrupted train() left RUNNING without a registered
  /// version (same fingerprint); they were ended KILLED before the adapters were recorded again.
  std::vector<std::string> abandoned_runs;
  [[nodiscard]] std::size_t failed() const;
  [[nodiscard]] nlohmann::json to_json() const;
};

/// A recorded release.
struct ReleaseRecord {
  std::string md5;
  std::string image;          ///< the image tag, repository:md5
  std::string previous;       ///< MD5 of the release before it (empty for the first)
  std::string state;          ///< "recording" while aliases move, "complete" once all moved
  std::string run_id;
  std::int64_t time_ms = 0;   ///< when it was recorded
  ReleaseManifest manifest;
  [[nodiscard]] nlohmann::json to_json() const;
};

/// One metric of two model versions scored on the same evaluation rows.
struct MetricChange {
  double old_value = 0;  ///< the old version's value
  double new_value = 0;  ///< the new version's value
  [[nodiscard]] double delta() const noexcept { return new_value - old_value; }
};

/// An evaluation that scored two versions on the same rows, read at one data commit, as the change from
/// the old version to the new one.
struct EvaluatedChange {
  std::string data;    ///< whose training data commit the rows were read at: "new" or "old" version's
  std::string commit;  ///< that data commit
  std::int64_t rows = 0;  ///< n: evaluation rows both versions were scored on
  /// "accuracy", "macro_f1", "log_loss" (each present when recorded)
  std::map<std::string, MetricChange> metrics;
  bool has_interval = false;  ///< the paired interval below was recorded
  double low = 0, high = 0;   ///< interval of the accuracy change (a fraction) at `confidence`
  double confidence = 0;      ///< its level (0 when not recorded)
  double p_value = 1;         ///< McNemar's exact two-sided test of equal accuracy
  [[nodiscard]] nlohmann::json to_json() const;
};

/// A model whose version differs between two releases, with the evaluation recorded between the two
/// versions by Pipeline::evaluate.
struct ReleaseChange {
  std::string name;
  std::int64_t old_version = 0, new_version = 0;
  /// "forward": the new version was evaluated against the old one; "reversed": the old one against the
  /// new one (a rollback; every change is then turned around to read old -> new); "none": no recorded
  /// evaluation compares the two.
  std::string evaluation = "none";
  std::string verdict;                  ///< the gate's verdict recorded on the new version ("forward" only)
  std::vector<std::string> reasons;     ///< and its reasons
  std::vector<EvaluatedChange> changes;  ///< at the new version's data commit first, then the old one's
  [[nodiscard]] nlohmann::json to_json() const;
};

/// Two releases compared: the version changes of their manifests, and for each changed model the metric
/// changes its recorded evaluation measured.
struct ReleaseComparison {
  std::string from, to;                 ///< the two releases' full MD5s
  ManifestDiff diff;
  std::vector<ReleaseChange> changed;   ///< one per diff.changed, in the same order
  /// {"from", "to", "added": {name: version}, "removed": {name: version}, "changed": {name: change}}
  [[nodiscard]] nlohmann::json to_json() const;
};

/// What a release image installs and what it is built on. The image installs this project from its own
/// wheel and its runtime dependencies from their wheels, all copied into the build context and pinned by
/// SHA-256: nothing is installed by name from a package index.
struct BuildContextOptions {
  std::filesystem::path wheel;  ///< this project's wheel (mlops_dolt-*.whl); empty: the release folder only
  std::vector<std::filesystem::path> dependency_wheels;  ///< wheels of its runtime dependencies (numpy, ...)
  std::string base_image;  ///< needs python3 with venv; default python:<the wheel's X.Y>-slim-bookworm
};

/// How release() applies the evaluation gates: Enforce holds failing candidates back, Warn ships them and
/// lists them, Off ships every candidate without evaluating.
enum class GateMode { Enforce, Warn, Off };
/// "enforce", "warn" or "off". @throws ConfigError naming the value otherwise
GateMode parse_gate_mode(const std::string& text);
[[nodiscard]] const char* gate_mode_name(GateMode mode) noexcept;

/// A candidate that failed its gate: what shipped instead and why.
struct HeldBack {
  std::string name;
  std::int64_t candidate_version = 0;  ///< the staging version that failed
  std::int64_t kept_version = 0;       ///< the version released instead (0: the adapter is left out)
  std::string verdict;                 ///< "fail" or "error"
  std::vector<std::string> reasons;
  [[nodiscard]] nlohmann::json to_json() const;
};

/// What release() or rollback() did.
struct ReleaseReport {
  ReleaseRecord release;
  std::vector<std::string> moved;    ///< models whose alias was moved (or deleted) by this call
  std::vector<std::string> pending;  ///< models whose alias could not be moved (server failure): re-run to finish
  std::string error;                 ///< the failure that left `pending` non-empty
  std::string gate = "off";          ///< the gate mode release() applied ("off" for rollbacks)
  std::vector<std::string> promoted;  ///< models whose candidate (staging) version this release ships anew
  std::vector<HeldBack> held_back;    ///< candidates that failed their gate and were not shipped (enforce)
  std::vector<HeldBack> warned;       ///< candidates that failed their gate and shipped anyway (warn)
  [[nodiscard]] bool complete() const noexcept { return pending.empty(); }
  [[nodiscard]] nlohmann::json to_json() const;
};

/// Plan, train, release and roll back a catalog of adapters. Borrows the three components: they must
/// outlive the Pipeline.
class Pipeline {
 public:
  Pipeline(DoltSource& source, MlflowTracker& tracker, CudaTrainer& trainer, Catalog catalog,
           PipelineOptions options = {});

  [[nodiscard]] const Catalog& catalog() const noexcept { return catalog_; }
  [[nodiscard]] const PipelineOptions& options() const noexcept { return options_; }

  /// Per adapter: up to date or stale, and why (never trained; its slice changed between the data commit
  /// of its production version and `at`; hyperparameters changed; code changed when asked).
  Plan plan(const std::string& at = "main");

  /// Trains the stale adapters of one shard in one batched fit at the plan's commit. Each becomes an MLflow
  /// run (params, per-epoch metrics, lineage tags, dataset input, model artifacts), a registered version and
  /// the staging alias. An adapter whose data is bad is reported as failed and the rest go on. A version
  /// already registered with the same fingerprint is reused, so re-running a shard adds no duplicate; runs
  /// an interrupted earlier attempt left RUNNING for these fingerprints are settled (FINISHED when their
  /// version was registered, else KILLED). One shard is not meant to run twice at the same time.
  /// @param progress called as work advances: ("load", adapters read, adapters in the shard) on this
  /// thread, ("fit", steps done, steps planned) on this thread, then ("record", adapters recorded,
  /// adapters trained) from the recording threads, one call at a time. An exception from it stops loading
  /// or training at once; during recording it is rethrown once every trained adapter is recorded.
  TrainReport train(const Plan& plan, int shard_index = 0, int shard_count = 1, const TrainProgress& progress = {});

  /// Releases, for every catalog adapter, its staging version (or its current version under `alias` when
  /// it has no newer one): records the manifest in MLflow, then moves `alias` (default: the production
  /// alias). When the server fails half-way the report names the aliases that moved and those pending;
  /// calling release() again completes it.
  /// @param image_repository Docker repository; the image tag is `repository:<md5>`
  /// With `gate` Enforce (the default) or Warn, every candidate is first evaluated (evaluate(alias)):
  /// under Enforce one that fails its gate is held back: the manifest keeps its current `alias` version
  /// (a new adapter is left out) and its alias does not move; the report lists it with the reasons.
  ReleaseReport release(const std::string& image_repository, const std::string& alias = "",
                        GateMode gate = GateMode::Enforce);

  /// Scores every candidate (the staging version) and its baseline (the version under `against`, default
  /// the production alias) on the adapter's evaluation rows, read at the candidate's data commit and at
  /// the baseline's, compares them row by row and applies the adapter's gate (see evaluation.hpp). An
  /// adapter whose candidate is its baseline is "unchanged" and not scored. With `record`, each scored
  /// candidate's run gets the `eval_*` / `baseline_eval_*` metrics and its version the `mlops.eval.*`
  /// tags (tags.hpp). A failure of one adapter (a missing artifact, bad rows) is its verdict "error".
  /// @throws ConfigError when `against` is the staging alias; TrackingError when recording fails
  EvaluationReport evaluate(const std::string& against = "", bool record = true);
  /// What training the plan's stale adapters would do to them, with nothing recorded and no alias moved:
  /// each stale adapter is fitted in memory on its training rows at the plan's commit and evaluated as
  /// evaluate() does, against the version under `against` (default the production alias), on the
  /// evaluation rows at the plan's commit and at the baseline's data commit. One item per stale adapter,
  /// with candidate_version 0 (nothing is registered); for a review of a data branch before it is merged.
  /// @throws ConfigError when `against` is the staging alias
  EvaluationReport preview(const Plan& plan, const std::string& against = "");

  /// The regular evaluation a schedule runs to see drift: every model under `alias` (default the production
  /// alias) scored on its evaluation rows read at `at` (role "current") and at its own training commit
  /// (role "trained", when it differs). The verdict applies the absolute gates (min_eval_rows,
  /// min_accuracy) at `at`; the change against the training commit is reported in the reasons, not gated
  /// (those are other rows, not a paired comparison). Records nothing. An adapter without a model under the
  /// alias is "no model"; one whose rows or model cannot be read is "error".
  /// @throws ConfigError when `at` is empty; NotFoundError when it does not resolve
  EvaluationReport evaluate_at(const std::string& alias, const std::string& at);

  /// Restores the production aliases of a recorded release (models not in it lose the alias). A staging
  /// alias pointing at another version is moved to the restored one, so the next release() does not ship
  /// the withdrawn candidate again.
  /// @throws NotFoundError if no release has that MD5
  ReleaseReport rollback_release(const std::string& md5);
  /// Moves one model's production (and staging) alias to `version` and records the result as a new release.
  ReleaseReport rollback_model(const std::string& name, std::int64_t version);

  /// The production manifest as the aliases say now.
  ReleaseManifest current_manifest();
  /// Recorded releases, newest first.
  std::vector<ReleaseRecord> releases();
  /// @throws NotFoundError if no release has that MD5 (a unique prefix of at least 6 characters is accepted)
  ReleaseRecord get_release(const std::string& md5);
  ManifestDiff diff_releases(const std::string& from_md5, const std::string& to_md5);
  /// diff_releases() with, for each changed model, the evaluation recorded between its two versions
  /// (evaluate() with record): accuracy, macro-F1 and log loss of both, n, the paired interval of the
  /// accuracy change and the gate's verdict. Reads the model versions and their runs from MLflow.
  /// @throws NotFoundError if no release has one of the MD5s
  ReleaseComparison compare_releases(const std::string& from_md5, const std::string& to_md5);

  /// Lineage of a model version given as a number or an alias: code commit, data commit, source, query,
  /// digest, params, final metrics.
  nlohmann::json lineage(const std::string& name, const std::string& version_or_alias);

  /// Writes a Docker build context for a release (`md5`, default the latest): manifest.json, lineage.json,
  /// every model's artifacts under models/<name>/, the wheels of `options` under wheels/ with
  /// wheels/requirements.txt pinning each by SHA-256, and a Dockerfile: OCI labels (release MD5, previous
  /// release, per-model version and commits), an install with `pip --no-index --require-hashes` into a venv,
  /// a non-root user, `EXPOSE 8080`, a HEALTHCHECK on /health and `mlops serve /srv/release` as its command.
  /// `docker build -t <image tag> <dir>` builds the release image. Without `options.wheel` only the release
  /// folder is written (manifest.json, lineage.json, models/): what `mlops serve DIR` reads.
  /// @throws ConfigError naming the file when a wheel is missing or is not a wheel (before anything is written)
  /// @return the image tag
  std::string write_build_context(const std::filesystem::path& dir, const std::string& md5,
                                  const BuildContextOptions& options);

 private:
  void count_stale_rows(Plan& plan);
  bool awaiting_release(PlanItem& item, const std::vector<ModelVersion>& versions,
                        const std::string& wanted_fingerprint) const;
  void settle_interrupted_runs(const std::map<std::string, std::string>& fingerprints,
                               const std::map<std::string, std::vector<ModelVersion>>& versions,
                               TrainReport& report);

  DoltSource& source_;
  MlflowTracker& tracker_;
  CudaTrainer& trainer_;
  Catalog catalog_;
  PipelineOptions options_;
};

}  // namespace mlops
