/// @file mlflow.hpp
/// MlflowTracker: a client of MLflow's REST API (`/api/2.0/mlflow/...` and the proxied artifact API
/// `/api/2.0/mlflow-artifacts/...`) for runs, metrics, lineage, artifacts, models, the registry and aliases.
///
/// Logging is asynchronous and loss-free: params, metrics and tags go into a bounded queue that a
/// background sender delivers as `log-batch` requests within MLflow's limits. When the server cannot be
/// reached for longer than the retries last, pending batches are appended to a spool file and delivered
/// when it answers again. A metric point is identified by (key, step, timestamp, value), which the server
/// stores once however often it is delivered, so a redelivery never duplicates a point.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mlops {

class Dataset;
struct TrainedAdapter;

/// Where the running code came from: the git commit, branch, remote and whether the tree has changes.
struct SourceInfo {
  std::string commit;       ///< full commit hash (empty outside a git repository)
  std::string branch;       ///< branch name (empty when detached or unknown)
  std::string repo_url;     ///< remote URL with credentials removed (empty when none)
  bool dirty = false;       ///< tracked files differ from the commit
  std::string source_name;  ///< the program (script path or executable)
  std::string source_type;  ///< "LOCAL", or "JOB" inside GitHub Actions

  [[nodiscard]] nlohmann::json to_json() const;
};

/// Detects the code version: inside GitHub Actions (`GITHUB_ACTIONS=true` and `GITHUB_SHA` set) from
/// `GITHUB_SHA`, `GITHUB_REF_NAME`, `GITHUB_SERVER_URL`/`GITHUB_REPOSITORY`; otherwise from the git
/// repository that contains `directory` (`git rev-parse`, `git status`). Never throws: fields it cannot
/// find stay empty.
[[nodiscard]] SourceInfo detect_source_info(const std::filesystem::path& directory = ".");

/// The final state of a run.
enum class RunStatus { Finished, Failed, Killed };

/// Connection and logging settings. `from_env` fills them as MLflow's own client does.
struct MlflowOptions {
  std::string tracking_uri;       ///< http(s)://host:port[/prefix]
  std::string username;           ///< basic auth (MLFLOW_TRACKING_USERNAME); wins over the token
  std::string password;           ///< basic auth (MLFLOW_TRACKING_PASSWORD)
  std::string token;              ///< bearer token (MLFLOW_TRACKING_TOKEN)
  bool insecure_tls = false;      ///< skip TLS verification (MLFLOW_TRACKING_INSECURE_TLS)
  std::string server_cert_path;   ///< CA bundle for the server (MLFLOW_TRACKING_SERVER_CERT_PATH)
  std::string client_cert_path;   ///< client certificate, PEM (MLFLOW_TRACKING_CLIENT_CERT_PATH)
  int max_retries = 7;            ///< MLFLOW_HTTP_REQUEST_MAX_RETRIES
  double backoff_factor = 2.0;    ///< MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR (seconds)
  double backoff_jitter = 1.0;    ///< MLFLOW_HTTP_REQUEST_BACKOFF_JITTER (seconds)
  long timeout_seconds = 120;     ///< MLFLOW_HTTP_REQUEST_TIMEOUT, per request
  /// A server that has never answered (a wrong address, not started) gets retries for at most this many
  /// seconds per request, so a mistake shows within moments instead of after minutes of backoff; 0: no
  /// limit. from_env() sets 0 when MLFLOW_HTTP_REQUEST_MAX_RETRIES is set: then that count rules.
  double first_contact_seconds = 30;
  bool log_retries = true;        ///< say each retry on stderr (what failed, the wait)
  bool async_logging = true;      ///< false: every log call is delivered before it returns
  std::size_t queue_capacity = 100000;  ///< entries held in memory before a log call waits
  std::filesystem::path spool_dir;      ///< where undelivered batches are kept (empty: a per-user temp folder)
  double outage_retry_seconds = 1.0;    ///< pause between delivery attempts while the server is unreachable
  double flush_timeout_seconds = 600;   ///< how long flush()/end() wait for delivery before throwing

  /// Options from the environment; `tracking_uri`, when not empty, wins over MLFLOW_TRACKING_URI.
  /// @throws ConfigError for a missing URI, a malformed number, or INSECURE_TLS with a CA path
  static MlflowOptions from_env(const std::string& tracking_uri = "");
};

/// One version of a registered model.
struct ModelVersion {
  std::string name;                 ///< registered model name
  std::int64_t version = 0;         ///< version number (1, 2, ...)
  std::string run_id;               ///< the run that produced it
  std::string source;               ///< artifact URI of the model directory
  std::string status;               ///< READY, PENDING_REGISTRATION, FAILED_REGISTRATION
  std::vector<std::string> aliases; ///< aliases pointing at it
  std::map<std::string, std::string> tags;
  std::int64_t creation_timestamp = 0;  ///< ms since the epoch

  [[nodiscard]] nlohmann::json to_json() const;
  static ModelVersion from_json(const nlohmann::json& j);
};

/// A run as the server records it: its info, tags, params and latest metric values.
struct RunInfo {
  std::string run_id;
  std::string experiment_id;
  std::string name;                 ///< run name (empty when none)
  std::string status;               ///< RUNNING, SCHEDULED, FINISHED, FAILED or KILLED
  std::string artifact_uri;         ///< e.g. `mlflow-artifacts:/1/<run id>/artifacts`
  std::int64_t start_time = 0;      ///< ms since the epoch
  std::int64_t end_time = 0;        ///< ms since the epoch (0 while running)
  std::map<std::string, std::string> tags;
  std::map<std::string, std::string> params;
  std::map<std::string, double> metrics;  ///< the latest value of each metric

  /// The value of tag `key`, empty when the run has none.
  [[nodiscard]] std::string tag(const std::string& key) const;
  [[nodiscard]] nlohmann::json to_json() const;
  /// From MLflow's run object (`{"info": ..., "data": ...}`). Missing fields stay empty.
  static RunInfo from_json(const nlohmann::json& run);
};

/// A registered model: its name, tags and aliases.
struct RegisteredModel {
  std::string name;
  std::string description;
  std::map<std::string, std::string> tags;
  std::map<std::string, std::int64_t> aliases;  ///< alias -> version
  std::int64_t creation_timestamp = 0;          ///< ms since the epoch
  std::int64_t last_updated_timestamp = 0;      ///< ms since the epoch

  [[nodiscard]] nlohmann::json to_json() const;
  static RegisteredModel from_json(const nlohmann::json& j);
};

/// One entry of an artifact listing.
struct ArtifactInfo {
  std::string path;         ///< path relative to the run's artifact root
  bool is_dir = false;
  std::int64_t file_size = 0;  ///< bytes (0 for folders)
};

class MlflowTracker;

/// A run being logged. A handle: copies share the run. Log calls queue and return (asynchronous
/// logging); `flush()` and `end()` wait for delivery and rethrow what the sender could not deliver.
/// When the last handle of a run that was not ended goes away, the run is flushed and ended FINISHED,
/// or FAILED while an exception is propagating.
class Run {
 public:
  [[nodiscard]] const std::string& id() const;
  [[nodiscard]] const std::string& experiment_id() const;
  [[nodiscard]] const std::string& name() const;
  /// e.g. `mlflow-artifacts:/1/<run id>/artifacts`.
  [[nodiscard]] const std::string& artifact_uri() const;

  /// Logs a param. Params are immutable: the same value again is fine.
  /// @throws ConflictError when `key` was logged by this run with another value
  /// @throws DataError for a key MLflow refuses or a value longer than 6000 characters
  void log_param(const std::string& key, const std::string& value);
  void log_params(const std::map<std::string, std::string>& params);
  /// Logs one metric point; `timestamp_ms` < 0 means now. NaN and ±inf are kept as such.
  /// @throws DataError for a key MLflow refuses
  void log_metric(const std::string& key, double value, std::int64_t step = 0, std::int64_t timestamp_ms = -1);
  void log_metrics(const std::map<std::string, double>& metrics, std::int64_t step = 0,
                   std::int64_t timestamp_ms = -1);
  /// Sets a run tag (a later value replaces an earlier one). @throws DataError for a bad key or a value > 8000
  void set_tag(const std::string& key, const std::string& value);
  void set_tags(const std::map<std::string, std::string>& tags);

  /// Records `dataset` as an input of the run (source type `dolt`, source JSON with the URI, commit,
  /// table and query; digest cut to 36 characters; tag `mlflow.data.context`) and sets the run tags
  /// `mlops.data.commit`, `mlops.data.uri`, `mlops.data.table`, `mlops.data.query_sha256`,
  /// `mlops.data.digest`. @param name the dataset's name (empty: the table)
  void log_dataset(const Dataset& dataset, const std::string& context = "training", const std::string& name = "");

  /// Uploads `bytes` from memory as the artifact file `artifact_file` (a path in the run's artifacts,
  /// e.g. "manifest.json" or "notes/summary.txt"). @throws ConfigError for a path with ".."
  /// @throws TrackingError when the upload fails
  void log_bytes(const std::string& bytes, const std::string& artifact_file);
  /// Uploads a file (streamed) to `<artifact_path>/<file name>` in the run's artifacts.
  /// @throws ConfigError when the file cannot be read
  void log_artifact(const std::filesystem::path& local_file, const std::string& artifact_path = "");
  /// Uploads every file under `local_dir` to `artifact_path` (keeping the relative paths).
  void log_artifacts(const std::filesystem::path& local_dir, const std::string& artifact_path = "");
  /// Lists the run's artifacts under `path` (one level). @throws NotFoundError for an unknown run
  [[nodiscard]] std::vector<ArtifactInfo> list_artifacts(const std::string& path = "") const;
  /// Downloads the file or folder `path` (streamed, each file written atomically) to `dest_dir`;
  /// returns the local path of what was downloaded. @throws NotFoundError when it does not exist
  std::filesystem::path download_artifacts(const std::string& path, const std::filesystem::path& dest_dir) const;

  /// Writes and uploads a model directory that `mlflow.pyfunc.load_model` can load: `MLmodel` with a
  /// python_function flavor (loader module `mlops.pyfunc`, data = the weights file) and the lineage in
  /// its `metadata`, the weights file and `requirements.txt`: three uploads. Also sets the tag
  /// `mlops.model.<artifact_path>.sha256`.
  /// @param weights_path a safetensors file in the layout `mlops.adapter.v1`
  /// @param lineage JSON object stored as MLmodel's metadata.lineage
  /// @throws ConfigError when the weights cannot be read
  void log_model_file(const std::filesystem::path& weights_path, const nlohmann::json& lineage,
                      const std::string& artifact_path = "model");

  /// Uploads a trained adapter (safetensors bytes, layout `mlops.adapter.v1`, from memory) as
  /// log_model_file() does, with the adapter's lineage in MLmodel's metadata.
  /// @throws TrackingError when an upload fails
  void log_adapter(const TrainedAdapter& trained, const std::string& artifact_path = "model");

  /// Keeps the log calls that follow (params, metrics, tags) in memory and sends them together at the next
  /// flush() or end(): one log-batch request where MLflow's limits allow (1000 entries, 100 params,
  /// 100 tags), instead of one per call. For recording a finished training in a few requests; what is
  /// held is not on the server until then. Dataset inputs and artifacts are still sent at once.
  void hold_logging();

  /// Sends what hold_logging() kept, then waits until everything logged so far is on the server.
  /// @throws TrackingError for what the server refused, or naming the spool file when the server did not
  /// answer within `flush_timeout_seconds` (the batches stay there for a later delivery)
  void flush();
  /// Flushes, then sets the run's status and end time. Idempotent.
  void end(RunStatus status = RunStatus::Finished);
  [[nodiscard]] bool ended() const;

  struct State;

 private:
  friend class MlflowTracker;
  explicit Run(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

/// Client of one MLflow tracking server. Thread-safe; one connection pool shared by its runs.
class MlflowTracker {
 public:
  /// @param tracking_uri empty: `MLFLOW_TRACKING_URI`. @throws ConfigError when there is none
  explicit MlflowTracker(const std::string& tracking_uri = "");
  explicit MlflowTracker(MlflowOptions options);
  ~MlflowTracker();
  MlflowTracker(const MlflowTracker&) = delete;
  MlflowTracker& operator=(const MlflowTracker&) = delete;

  /// The tracking URI as it may be shown: without user:password@ and without secret parameter values.
  [[nodiscard]] const std::string& tracking_uri() const;
  [[nodiscard]] const MlflowOptions& options() const;

  /// The id of experiment `name`, created when missing (safe when two processes race).
  std::string experiment_id(const std::string& name);

  /// Starts a run in experiment `experiment` (created when missing) with MLflow's standard tags
  /// (user, source, git commit/branch/repo/dirty) and `tags`. A retried create never leaves a second run.
  Run start_run(const std::string& experiment, const std::string& run_name = "",
                const std::map<std::string, std::string>& tags = {});

  /// @throws NotFoundError
  [[nodiscard]] RunInfo get_run(const std::string& run_id);
  /// Runs of the experiments matching `filter` (MLflow search syntax), every page, in the server's order
  /// (newest start time first).
  [[nodiscard]] std::vector<RunInfo> search_runs(const std::vector<std::string>& experiment_ids,
                                                 const std::string& filter = "", int page_size = 1000);
  /// Ends a run that this process may not hold a Run handle for (e.g. one an interrupted process left
  /// RUNNING): sets its status and its end time (`end_time_ms` < 0: now). @throws NotFoundError
  void end_run(const std::string& run_id, RunStatus status, std::int64_t end_time_ms = -1);
  /// Sets tag `key` of any run (a later value replaces an earlier one).
  /// @throws DataError for a key MLflow refuses; NotFoundError for an unknown run
  void set_run_tag(const std::string& run_id, const std::string& key, const std::string& value);
  /// Logs metrics to any run, finished or not (e.g. evaluation results added to a training run after it
  /// ended), in one request of at most 1000 metrics, delivered before it returns.
  /// @throws DataError for a key MLflow refuses or a non-finite value; NotFoundError for an unknown run
  void log_metrics(const std::string& run_id, const std::map<std::string, double>& metrics, std::int64_t step = 0);
  /// Every point of metric `key` of a run (all pages), each {key, value, timestamp, step}.
  [[nodiscard]] std::vector<nlohmann::json> metric_history(const std::string& run_id, const std::string& key);

  /// Creates registered model `name` when missing (race-safe). Returns true when this call created it,
  /// false when it existed already (made by anyone, this process included: MLflow cannot tell them apart).
  bool create_registered_model(const std::string& name, const std::map<std::string, std::string>& tags = {},
                               const std::string& description = "");
  /// Deletes registered model `name` with all its versions. @throws NotFoundError when there is none
  void delete_registered_model(const std::string& name);
  /// Registers `<run artifact uri>/<artifact_path>` as a new version of `name` (the model is created
  /// when missing) and waits until it is READY.
  /// @throws TrackingError when registration fails or is not READY within `wait_seconds`
  ModelVersion register_model(const std::string& name, const Run& run, const std::string& artifact_path = "model",
                              const std::map<std::string, std::string>& tags = {}, double wait_seconds = 300);
  /// @throws NotFoundError
  [[nodiscard]] ModelVersion get_model_version(const std::string& name, std::int64_t version);
  /// Points `alias` at `version` (moving it if it pointed elsewhere).
  void set_alias(const std::string& name, const std::string& alias, std::int64_t version);
  /// @throws NotFoundError when the model or alias does not exist
  [[nodiscard]] ModelVersion get_by_alias(const std::string& name, const std::string& alias);
  void delete_alias(const std::string& name, const std::string& alias);
  void set_registered_model_tag(const std::string& name, const std::string& key, const std::string& value);
  void set_model_version_tag(const std::string& name, std::int64_t version, const std::string& key,
                             const std::string& value);
  /// @throws NotFoundError
  [[nodiscard]] RegisteredModel get_registered_model(const std::string& name);
  /// Model versions matching `filter` (e.g. "name='m'"), following every page of `page_size`, by name and
  /// version, each once (versions created while the pages are read may or may not be among them).
  [[nodiscard]] std::vector<ModelVersion> search_model_versions(const std::string& filter = "",
                                                                int page_size = 200);
  /// Registered models matching `filter` (e.g. "name LIKE 'cust%'"), every page.
  [[nodiscard]] std::vector<RegisteredModel> search_registered_models(const std::string& filter = "",
                                                                     int page_size = 100);

  /// Where version `version` of `name` came from: {name, version, run_id, source, code {commit, branch,
  /// repo_url, dirty}, data {commit, uri, table, query, digest, ...}, params, metrics (final values)}.
  [[nodiscard]] nlohmann::json lineage(const std::string& name, std::int64_t version);

  /// Downloads an artifact URI (`mlflow-artifacts:/...`, a file or a folder) into `dest_dir`.
  std::filesystem::path download_artifacts(const std::string& artifact_uri, const std::filesystem::path& dest_dir);
  /// The bytes of the artifact file at `artifact_uri`, read into memory (for small files such as a
  /// manifest). @throws NotFoundError when it does not exist
  [[nodiscard]] std::string read_artifact(const std::string& artifact_uri);

  /// Delivers batches that an earlier process left in the spool folder; returns how many were delivered.
  std::size_t deliver_spooled();

  /// One REST call: `path` after `/api/2.0/` (e.g. "mlflow/runs/get"); GET sends `body`'s fields as the
  /// query string. Retries as configured. For calls the typed methods above do not cover; mlops itself
  /// uses only those. @throws NotFoundError, ConflictError, TrackingError
  nlohmann::json call(const std::string& method, const std::string& path, const nlohmann::json& body = {});

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace mlops
