/// @file tags.hpp
/// The names mlops gives things in MLflow, spelled once: run, model-version and release tags, artifact
/// names and the default experiments and aliases. The tracker, the pipeline, the bindings (Python reads
/// them as `mlops.tags`) and anything that reads MLflow's records back use these constants.
///
/// Who sets what:
/// - every run: MLflow's standard tags (`mlflow.user`, `mlflow.source.*`, `mlflow.runName`) and
///   `mlops.client_request_id` (finds a create whose answer was lost);
/// - Run::log_dataset: `mlops.data.commit`, `.uri`, `.table`, `.query_sha256`, `.digest`, `.rows`;
/// - Run::log_adapter / log_model_file: `mlops.model.<artifact path>.sha256` (the weights' SHA-256);
/// - Pipeline::train, on the run: `mlops.adapter`, `mlops.fingerprint`, `mlops.code.commit`,
///   `mlops.device`; on the model version: `mlops.fingerprint` (SHA-256 of adapter, data commit, code
///   commit, hyperparameters and slice), `mlops.data.commit`, `mlops.code.commit`, `mlops.params` (JSON),
///   `mlops.slice` (JSON), `mlops.rows`;
/// - Pipeline::evaluate, on the candidate's version: `mlops.eval.*` (baseline, commits, rows digest,
///   verdict); on its run: the `eval_*` and `baseline_eval_*` metrics;
/// - Pipeline::release: one run per release in the releases experiment, named by the manifest's MD5,
///   with `mlops.release.md5`, `.image`, `.previous`, `.models` and `.state` (`recording` while aliases
///   move, `complete` once all moved), and the canonical manifest as the artifact `manifest.json`.
#pragma once

#include <string>

namespace mlops::tags {

// ---- MLflow's own run tags -----------------------------------------------------------------------------
inline constexpr const char* kRunName = "mlflow.runName";
inline constexpr const char* kUser = "mlflow.user";
inline constexpr const char* kSourceName = "mlflow.source.name";
inline constexpr const char* kSourceType = "mlflow.source.type";
inline constexpr const char* kGitCommit = "mlflow.source.git.commit";
inline constexpr const char* kGitBranch = "mlflow.source.git.branch";
inline constexpr const char* kGitRepoUrl = "mlflow.source.git.repoURL";
inline constexpr const char* kGitDirty = "mlflow.source.git.dirty";
/// Tag of a dataset input: what the dataset was used for ("training").
inline constexpr const char* kDataContext = "mlflow.data.context";
/// Prefixes of the tags MLflow and mlops set themselves (the rest are the user's).
inline constexpr const char* kMlflowPrefix = "mlflow.";
inline constexpr const char* kMlopsPrefix = "mlops.";

// ---- Every run and model version -----------------------------------------------------------------------
inline constexpr const char* kClientRequestId = "mlops.client_request_id";

// ---- Data lineage (Run::log_dataset) -------------------------------------------------------------------
inline constexpr const char* kDataCommit = "mlops.data.commit";
inline constexpr const char* kDataUri = "mlops.data.uri";
inline constexpr const char* kDataTable = "mlops.data.table";
inline constexpr const char* kDataQuerySha256 = "mlops.data.query_sha256";
inline constexpr const char* kDataDigest = "mlops.data.digest";
inline constexpr const char* kDataRows = "mlops.data.rows";
/// Source type of the dataset inputs mlops records.
inline constexpr const char* kDatasetSourceType = "dolt";

// ---- Trained adapters (Pipeline::train) ----------------------------------------------------------------
inline constexpr const char* kAdapter = "mlops.adapter";
inline constexpr const char* kFingerprint = "mlops.fingerprint";
inline constexpr const char* kCodeCommit = "mlops.code.commit";
inline constexpr const char* kDevice = "mlops.device";
inline constexpr const char* kParams = "mlops.params";
inline constexpr const char* kSlice = "mlops.slice";
inline constexpr const char* kRows = "mlops.rows";

/// The run tag holding the SHA-256 of the weights of the model directory at `artifact_path`.
inline std::string model_sha256(const std::string& artifact_path) {
  return "mlops.model." + artifact_path + ".sha256";
}

// ---- Evaluation (Pipeline::evaluate) -------------------------------------------------------------------
/// On the candidate's model version: what it was compared with and the gate's verdict.
inline constexpr const char* kEvalAgainst = "mlops.eval.against";                 ///< the baseline alias
inline constexpr const char* kEvalBaselineVersion = "mlops.eval.baseline_version";  ///< "0": no baseline
inline constexpr const char* kEvalCommits = "mlops.eval.commits";  ///< JSON {"candidate": c, "baseline": c}
/// JSON {"candidate": digest, "baseline": digest}: content digests of the evaluation rows at each commit
inline constexpr const char* kEvalRowsDigest = "mlops.eval.rows_digest";
inline constexpr const char* kEvalVerdict = "mlops.eval.verdict";  ///< "pass" or "fail"
inline constexpr const char* kEvalReasons = "mlops.eval.reasons";  ///< the verdict's reasons, one a line
inline constexpr const char* kEvalConfidence = "mlops.eval.confidence";  ///< level of the paired interval
/// Metrics on the candidate's run: `eval_<metric>` of the candidate and `baseline_eval_<metric>` of the
/// baseline on the evaluation rows at the candidate's data commit; the same with kEvalBaselineDataInfix
/// after the prefix (`eval_baseline_data_accuracy`) at the baseline's data commit. Metrics: accuracy,
/// macro_f1, log_loss, rows, recall_<class>; and of the comparison: accuracy_delta, accuracy_delta_low,
/// accuracy_delta_high, mcnemar_p (under `eval_`).
inline constexpr const char* kEvalMetricPrefix = "eval_";
inline constexpr const char* kBaselineEvalMetricPrefix = "baseline_eval_";
inline constexpr const char* kEvalBaselineDataInfix = "baseline_data_";

// ---- Releases (Pipeline::release, rollback) ------------------------------------------------------------
inline constexpr const char* kReleaseMd5 = "mlops.release.md5";
inline constexpr const char* kReleaseImage = "mlops.release.image";
inline constexpr const char* kReleasePrevious = "mlops.release.previous";
inline constexpr const char* kReleaseModels = "mlops.release.models";
inline constexpr const char* kReleaseState = "mlops.release.state";
/// Values of kReleaseState.
inline constexpr const char* kStateRecording = "recording";
inline constexpr const char* kStateComplete = "complete";
/// The release run's artifact holding the canonical manifest.
inline constexpr const char* kManifestArtifact = "manifest.json";
/// The release lease: a numbered registered model per release experiment (`<prefix><generation>`) whose
/// tags name its holder and time-to-live; its holder renews it by updating it, so MLflow's own
/// `last_updated_timestamp` is its heartbeat. A generation is free once released, or once the tracker's
/// clock (`<prefix>clock`, a registered model that waiters update to read the time) is past its last
/// renewal plus its time-to-live.
inline constexpr const char* kLeasePrefix = "mlops.lease.";
inline constexpr const char* kLeaseHolder = "mlops.lease.holder";
inline constexpr const char* kLeaseTtl = "mlops.lease.ttl_ms";
/// The release run that the holder of a generation applies, recorded before it moves any alias.
inline constexpr const char* kLeaseTarget = "mlops.lease.release_run";
/// Expiry in the holder's own clock, written by holders from before leases were renewed; read only from a
/// generation without kLeaseTtl, and judged against the tracker's clock.
inline constexpr const char* kLeaseExpires = "mlops.lease.expires_ms";
inline constexpr const char* kLeaseReleased = "mlops.lease.released";
inline constexpr const char* kLeaseExperiment = "mlops.lease.experiment";

// ---- Defaults ------------------------------------------------------------------------------------------
inline constexpr const char* kModelArtifactPath = "model";  ///< where a run's model directory goes
inline constexpr const char* kAdaptersExperiment = "mlops-adapters";
inline constexpr const char* kReleasesExperiment = "mlops-releases";
inline constexpr const char* kStagingAlias = "staging";
inline constexpr const char* kProductionAlias = "production";

}  // namespace mlops::tags
