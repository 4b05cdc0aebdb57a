// Python bindings of the MLflow tracker: MlflowTracker, Run, ModelVersion, SourceInfo, ArtifactInfo.
#include "bind.hpp"
#include "mlflow/model_dir.hpp"

#include "mlops/dataset.hpp"
#include "mlops/error.hpp"
#include "mlops/mlflow.hpp"
#include "mlops/tags.hpp"
#include "mlops/trainer.hpp"

namespace mlops::python {

namespace {

using Release = py::call_guard<py::gil_scoped_release>;

// MLflow's Python client logs str(value) for params and tags; do the same.
std::string as_text(const py::handle& v) {
  if (py::isinstance<py::str>(v)) return v.cast<std::string>();
  return py::str(v).cast<std::string>();
}

std::map<std::string, std::string> text_map(const py::object& d, const char* what) {
  std::map<std::string, std::string> out;
  if (d.is_none()) return out;
  if (!py::isinstance<py::dict>(d)) throw py::type_error(std::string(what) + " must be a dict");
  for (auto item : py::reinterpret_borrow<py::dict>(d)) out[as_text(item.first)] = as_text(item.second);
  return out;
}

std::map<std::string, double> number_map(const py::dict& d) {
  std::map<std::string, double> out;
  for (auto item : d) {
    const std::string key = as_text(item.first);
    PyObject* f = py::isinstance<py::str>(item.second) || py::isinstance<py::bytes>(item.second)
                      ? nullptr
                      : PyNumber_Float(item.second.ptr());
    if (f == nullptr) {
      PyErr_Clear();
      throw py::type_error("metric '" + key + "' must be a number, got " +
                           py::str(py::type::of(item.second)).cast<std::string>());
    }
    out[key] = PyFloat_AsDouble(f);
    Py_DECREF(f);
  }
  return out;
}

RunStatus parse_status(const std::string& s) {
  if (s == "FINISHED") return RunStatus::Finished;
  if (s == "FAILED") return RunStatus::Failed;
  if (s == "KILLED") return RunStatus::Killed;
  throw ConfigError("run status must be FINISHED, FAILED or KILLED, got '" + s + "'");
}

std::int64_t timestamp_arg(const py::object& t) { return t.is_none() ? -1 : t.cast<std::int64_t>(); }

}  // namespace

void bind_mlflow(py::module_& m) {
  {
    // Model directories logged from this process name this Python as their loader's (MLmodel).
    auto v = py::module_::import("sys").attr("version_info");
    mlops::model_dir::set_python_version(py::str("{}.{}.{}").format(v.attr("major"), v.attr("minor"), v.attr("micro"))
                                             .cast<std::string>());
  }
  // The tag names and conventions of include/mlops/tags.hpp, as mlops.tags.
  py::module_ t = m.def_submodule("tags", "The names mlops gives things in MLflow (tags, artifacts, defaults).");
  t.attr("RUN_NAME") = tags::kRunName;
  t.attr("USER") = tags::kUser;
  t.attr("SOURCE_NAME") = tags::kSourceName;
  t.attr("SOURCE_TYPE") = tags::kSourceType;
  t.attr("GIT_COMMIT") = tags::kGitCommit;
  t.attr("GIT_BRANCH") = tags::kGitBranch;
  t.attr("GIT_REPO_URL") = tags::kGitRepoUrl;
  t.attr("GIT_DIRTY") = tags::kGitDirty;
  t.attr("DATA_CONTEXT") = tags::kDataContext;
  t.attr("MLFLOW_PREFIX") = tags::kMlflowPrefix;
  t.attr("MLOPS_PREFIX") = tags::kMlopsPrefix;
  t.attr("CLIENT_REQUEST_ID") = tags::kClientRequestId;
  t.attr("DATA_COMMIT") = tags::kDataCommit;
  t.attr("DATA_URI") = tags::kDataUri;
  t.attr("DATA_TABLE") = tags::kDataTable;
  t.attr("DATA_QUERY_SHA256") = tags::kDataQuerySha256;
  t.attr("DATA_DIGEST") = tags::kDataDigest;
  t.attr("DATA_ROWS") = tags::kDataRows;
  t.attr("DATASET_SOURCE_TYPE") = tags::kDatasetSourceType;
  t.attr("ADAPTER") = tags::kAdapter;
  t.attr("FINGERPRINT") = tags::kFingerprint;
  t.attr("CODE_COMMIT") = tags::kCodeCommit;
  t.attr("DEVICE") = tags::kDevice;
  t.attr("PARAMS") = tags::kParams;
  t.attr("SLICE") = tags::kSlice;
  t.attr("ROWS") = tags::kRows;
  t.attr("RELEASE_MD5") = tags::kReleaseMd5;
  t.attr("RELEASE_IMAGE") = tags::kReleaseImage;
  t.attr("RELEASE_PREVIOUS") = tags::kReleasePrevious;
  t.attr("RELEASE_MODELS") = tags::kReleaseModels;
  t.attr("RELEASE_STATE") = tags::kReleaseState;
  t.attr("STATE_RECORDING") = tags::kStateRecording;
  t.attr("STATE_COMPLETE") = tags::kStateComplete;
  t.attr("MANIFEST_ARTIFACT") = tags::kManifestArtifact;
  t.attr("MODEL_ARTIFACT_PATH") = tags::kModelArtifactPath;
  t.attr("ADAPTERS_EXPERIMENT") = tags::kAdaptersExperiment;
  t.attr("RELEASES_EXPERIMENT") = tags::kReleasesExperiment;
  t.attr("STAGING_ALIAS") = tags::kStagingAlias;
  t.attr("PRODUCTION_ALIAS") = tags::kProductionAlias;
  t.def("model_sha256", &tags::model_sha256, py::arg("artifact_path"),
        "The run tag holding the SHA-256 of the weights of the model directory at artifact_path.");

  py::class_<SourceInfo>(m, "SourceInfo", "The code version: git commit, branch, remote, dirty, program.")
      .def_readonly("commit", &SourceInfo::commit)
      .def_readonly("branch", &SourceInfo::branch)
      .def_readonly("repo_url", &SourceInfo::repo_url)
      .def_readonly("dirty", &SourceInfo::dirty)
      .def_readonly("source_name", &SourceInfo::source_name)
      .def_readonly("source_type", &SourceInfo::source_type)
      .def("to_dict", &SourceInfo::to_json)
      .def("__repr__", [](const SourceInfo& s) {
        return "SourceInfo(commit='" + s.commit + "', branch='" + s.branch + "', dirty=" + (s.dirty ? "True" : "False") +
               ")";
      });
  m.def("detect_source_info", &detect_source_info, py::arg("directory") = std::filesystem::path("."), Release(),
        "The code version from GitHub Actions' environment (GITHUB_SHA, ...) or the git repository "
        "containing `directory`.");

  py::class_<ModelVersion>(m, "ModelVersion", "One version of a registered model.")
      .def_readonly("name", &ModelVersion::name)
      .def_readonly("version", &ModelVersion::version)
      .def_readonly("run_id", &ModelVersion::run_id)
      .def_readonly("source", &ModelVersion::source)
      .def_readonly("status", &ModelVersion::status)
      .def_readonly("aliases", &ModelVersion::aliases)
      .def_readonly("tags", &ModelVersion::tags)
      .def_readonly("creation_timestamp", &ModelVersion::creation_timestamp)
      .def("to_dict", &ModelVersion::to_json)
      .def("__int__", [](const ModelVersion& v) { return v.version; })
      // So that a ModelVersion goes wherever a version number does: set_alias(name, alias, mv).
      .def("__index__", [](const ModelVersion& v) { return v.version; })
      .def("__repr__", [](const ModelVersion& v) {
        return "ModelVersion(name='" + v.name + "', version=" + std::to_string(v.version) + ", status='" + v.status +
               "')";
      });

  py::class_<ArtifactInfo>(m, "ArtifactInfo", "One entry of an artifact listing.")
      .def_readonly("path", &ArtifactInfo::path)
      .def_readonly("is_dir", &ArtifactInfo::is_dir)
      .def_readonly("file_size", &ArtifactInfo::file_size)
      .def("__repr__", [](const ArtifactInfo& a) {
        return "ArtifactInfo(path='" + a.path + "', is_dir=" + (a.is_dir ? "True" : "False") +
               ", file_size=" + std::to_string(a.file_size) + ")";
      });

  py::class_<RunInfo>(m, "RunInfo", "A run as the server records it: info, tags, params, latest metrics.")
      .def_readonly("run_id", &RunInfo::run_id)
      .def_readonly("experiment_id", &RunInfo::experiment_id)
      .def_readonly("name", &RunInfo::name)
      .def_readonly("status", &RunInfo::status)
      .def_readonly("artifact_uri", &RunInfo::artifact_uri)
      .def_readonly("start_time", &RunInfo::start_time)
      .def_readonly("end_time", &RunInfo::end_time)
      .def_readonly("tags", &RunInfo::tags)
      .def_readonly("params", &RunInfo::params)
      .def_readonly("metrics", &RunInfo::metrics)
      .def("to_dict", &RunInfo::to_json)
      .def("__repr__", [](const RunInfo& r) {
        return "RunInfo(run_id='" + r.run_id + "', name='" + r.name + "', status='" + r.status + "')";
      });

  py::class_<RegisteredModel>(m, "RegisteredModel", "A registered model: name, description, tags, aliases.")
      .def_readonly("name", &RegisteredModel::name)
      .def_readonly("description", &RegisteredModel::description)
      .def_readonly("tags", &RegisteredModel::tags)
      .def_readonly("aliases", &RegisteredModel::aliases)
      .def_readonly("creation_timestamp", &RegisteredModel::creation_timestamp)
      .def_readonly("last_updated_timestamp", &RegisteredModel::last_updated_timestamp)
      .def("to_dict", &RegisteredModel::to_json)
      .def("__repr__", [](const RegisteredModel& r) {
        return "RegisteredModel(name='" + r.name + "', aliases=" + std::to_string(r.aliases.size()) + ")";
      });

  py::class_<Run>(m, "Run", R"doc(
A run being logged. Log calls queue and return; flush() and end() wait for delivery. As a context
manager the run ends FINISHED, or FAILED when the block raises.
)doc")
      .def_property_readonly("id", &Run::id)
      .def_property_readonly("experiment_id", &Run::experiment_id)
      .def_property_readonly("name", &Run::name)
      .def_property_readonly("artifact_uri", &Run::artifact_uri)
      .def_property_readonly("ended", &Run::ended)
      .def(
          "log_param",
          [](Run& r, const std::string& key, const py::handle& value) {
            std::string v = as_text(value);
            py::gil_scoped_release release;
            r.log_param(key, v);
          },
          py::arg("key"), py::arg("value"), "Logs str(value); the same value again is fine, another is ConflictError.")
      .def(
          "log_params",
          [](Run& r, const py::dict& params) {
            auto p = text_map(params, "params");
            py::gil_scoped_release release;
            r.log_params(p);
          },
          py::arg("params"))
      .def(
          "log_metric",
          [](Run& r, const std::string& key, double value, std::int64_t step, const py::object& timestamp) {
            const auto ts = timestamp_arg(timestamp);
            py::gil_scoped_release release;
            r.log_metric(key, value, step, ts);
          },
          py::arg("key"), py::arg("value"), py::arg("step") = 0, py::arg("timestamp") = py::none(),
          "One metric point; timestamp in ms since the epoch (None: now).")
      .def(
          "log_metrics",
          [](Run& r, const py::dict& metrics, std::int64_t step, const py::object& timestamp) {
            auto mm = number_map(metrics);
            const auto ts = timestamp_arg(timestamp);
            py::gil_scoped_release release;
            r.log_metrics(mm, step, ts);
          },
          py::arg("metrics"), py::arg("step") = 0, py::arg("timestamp") = py::none())
      .def(
          "set_tag",
          [](Run& r, const std::string& key, const py::handle& value) {
            std::string v = as_text(value);
            py::gil_scoped_release release;
            r.set_tag(key, v);
          },
          py::arg("key"), py::arg("value"))
      .def(
          "set_tags",
          [](Run& r, const py::dict& tags) {
            auto t = text_map(tags, "tags");
            py::gil_scoped_release release;
            r.set_tags(t);
          },
          py::arg("tags"))
      .def("log_dataset", &Run::log_dataset, py::arg("dataset"), py::arg("context") = "training",
           py::arg("name") = "", Release(),
           "Records the dataset as a run input (source type dolt) and sets the mlops.data.* tags.")
      .def(
          "log_bytes",
          [](Run& r, const py::object& data, const std::string& artifact_file) {
            if (!py::isinstance<py::bytes>(data) && !py::isinstance<py::str>(data))
              throw py::type_error("log_bytes takes bytes or str");
            std::string bytes = data.cast<std::string>();
            py::gil_scoped_release release;
            r.log_bytes(bytes, artifact_file);
          },
          py::arg("data"), py::arg("artifact_file"),
          "Uploads bytes (or str, as UTF-8) from memory as the artifact file `artifact_file`.")
      .def("log_artifact", &Run::log_artifact, py::arg("local_file"), py::arg("artifact_path") = "", Release())
      .def("log_artifacts", &Run::log_artifacts, py::arg("local_dir"), py::arg("artifact_path") = "", Release())
      .def("list_artifacts", &Run::list_artifacts, py::arg("path") = "", Release())
      .def("download_artifacts", &Run::download_artifacts, py::arg("path"), py::arg("dest_dir"), Release())
      .def(
          "log_model_file",
          [](Run& r, const std::filesystem::path& weights, const nlohmann::json& lineage, const std::string& artifact_path) {
            py::gil_scoped_release release;
            r.log_model_file(weights, lineage.is_null() ? nlohmann::json::object() : lineage, artifact_path);
          },
          py::arg("weights_path"), py::arg("lineage") = py::none(), py::arg("artifact_path") = "model",
          "Uploads a pyfunc model directory (MLmodel with the lineage in its metadata, weights, requirements.txt).")
      .def("log_adapter", &Run::log_adapter, py::arg("trained"), py::arg("artifact_path") = "model", Release(),
           "Uploads a trained adapter as a pyfunc model directory, with its lineage.")
      .def("hold_logging", &Run::hold_logging,
           "Keeps later params, metrics and tags in memory and sends them as one batch at flush() or end().")
      .def("flush", &Run::flush, Release())
      .def(
          "end", [](Run& r, const std::string& status) {
            const auto s = parse_status(status);
            py::gil_scoped_release release;
            r.end(s);
          },
          py::arg("status") = "FINISHED")
      .def("__enter__", [](Run& r) -> Run& { return r; }, py::return_value_policy::reference_internal)
      .def("__exit__", [](Run& r, const py::object& exc_type, const py::object&, const py::object&) {
        const bool failed = !exc_type.is_none();
        {
          py::gil_scoped_release release;
          if (failed) {
            try {
              r.end(RunStatus::Failed);
            } catch (const Error&) {
              // The block's own exception is the one to see.
            }
          } else {
            r.end(RunStatus::Finished);
          }
        }
        return false;
      })
      .def("__repr__", [](const Run& r) { return "Run(id='" + r.id() + "', name='" + r.name() + "')"; });

  py::class_<MlflowTracker>(m, "MlflowTracker", R"doc(
Client of an MLflow tracking server. Settings default to MLflow's environment variables
(MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN, MLFLOW_TRACKING_INSECURE_TLS,
MLFLOW_TRACKING_SERVER_CERT_PATH, MLFLOW_TRACKING_CLIENT_CERT_PATH, MLFLOW_HTTP_REQUEST_*).
)doc")
      .def(py::init([](const std::optional<std::string>& uri, const std::optional<std::string>& username,
                       const std::optional<std::string>& password, const std::optional<std::string>& token,
                       std::optional<bool> insecure_tls, const std::optional<std::string>& server_cert_path,
                       const std::optional<std::string>& client_cert_path, std::optional<int> max_retries,
                       std::optional<double> backoff_factor, std::optional<double> backoff_jitter,
                       std::optional<double> timeout, bool async_logging, std::size_t queue_capacity,
                       const std::optional<std::filesystem::path>& spool_dir, double outage_retry_seconds,
                       double flush_timeout) {
             auto o = MlflowOptions::from_env(uri.value_or(""));
             if (username) o.username = *username;
             if (password) o.password = *password;
             if (token) o.token = *token;
             if (insecure_tls) o.insecure_tls = *insecure_tls;
             if (server_cert_path) o.server_cert_path = *server_cert_path;
             if (client_cert_path) o.client_cert_path = *client_cert_path;
             if (max_retries) {
               o.max_retries = *max_retries;
               o.first_contact_seconds = 0;  // an explicit count rules
             }
             if (backoff_factor) o.backoff_factor = *backoff_factor;
             if (backoff_jitter) o.backoff_jitter = *backoff_jitter;
             if (timeout) o.timeout_seconds = static_cast<long>(std::max(1.0, *timeout));
             o.async_logging = async_logging;
             o.queue_capacity = queue_capacity;
             if (spool_dir) o.spool_dir = *spool_dir;
             o.outage_retry_seconds = outage_retry_seconds;
             o.flush_timeout_seconds = flush_timeout;
             return std::make_unique<MlflowTracker>(std::move(o));
           }),
           py::arg("tracking_uri") = py::none(), py::kw_only(), py::arg("username") = py::none(),
           py::arg("password") = py::none(), py::arg("token") = py::none(), py::arg("insecure_tls") = py::none(),
           py::arg("server_cert_path") = py::none(), py::arg("client_cert_path") = py::none(),
           py::arg("max_retries") = py::none(), py::arg("backoff_factor") = py::none(),
           py::arg("backoff_jitter") = py::none(), py::arg("timeout") = py::none(), py::arg("async_logging") = true,
           py::arg("queue_capacity") = 100000, py::arg("spool_dir") = py::none(),
           py::arg("outage_retry_seconds") = 1.0, py::arg("flush_timeout") = 600.0)
      .def_property_readonly("tracking_uri", &MlflowTracker::tracking_uri)
      .def("__repr__", [](const MlflowTracker& t) {
        return "MlflowTracker(" + py::repr(py::str(t.tracking_uri())).cast<std::string>() + ")";
      })
      .def("experiment_id", &MlflowTracker::experiment_id, py::arg("name"), Release(),
           "The experiment's id, created when missing.")
      .def(
          "start_run",
          [](MlflowTracker& t, const std::string& experiment, const std::optional<std::string>& run_name,
             const py::object& tags) {
            auto tg = text_map(tags, "tags");
            py::gil_scoped_release release;
            return t.start_run(experiment, run_name.value_or(""), tg);
          },
          py::arg("experiment"), py::arg("run_name") = py::none(), py::arg("tags") = py::none())
      .def("get_run", &MlflowTracker::get_run, py::arg("run_id"), Release())
      .def("search_runs", &MlflowTracker::search_runs, py::arg("experiment_ids"), py::arg("filter") = "",
           py::arg("page_size") = 1000, Release(), "Runs of the experiments matching `filter`, every page.")
      .def(
          "end_run",
          [](MlflowTracker& t, const std::string& run_id, const std::string& status, const py::object& end_time) {
            const auto s = parse_status(status);
            const auto ts = timestamp_arg(end_time);
            py::gil_scoped_release release;
            t.end_run(run_id, s, ts);
          },
          py::arg("run_id"), py::arg("status") = "FINISHED", py::arg("end_time") = py::none(),
          "Ends any run (e.g. one an interrupted process left RUNNING); end_time in ms (None: now).")
      .def("set_run_tag", &MlflowTracker::set_run_tag, py::arg("run_id"), py::arg("key"), py::arg("value"), Release())
      .def("metric_history", &MlflowTracker::metric_history, py::arg("run_id"), py::arg("key"), Release(),
           "Every point of a metric: dicts with key, value, timestamp, step.")
      .def(
          "create_registered_model",
          [](MlflowTracker& t, const std::string& name, const py::object& tags, const std::string& description) {
            auto tg = text_map(tags, "tags");
            py::gil_scoped_release release;
            return t.create_registered_model(name, tg, description);
          },
          py::arg("name"), py::arg("tags") = py::none(), py::arg("description") = "",
          "Creates the registered model when missing; True when this call created it.")
      .def("delete_registered_model", &MlflowTracker::delete_registered_model, py::arg("name"), Release())
      .def(
          "register",
          [](MlflowTracker& t, const std::string& name, const Run& run, const std::string& artifact_path,
             const py::object& tags, double wait_seconds) {
            auto tg = text_map(tags, "tags");
            py::gil_scoped_release release;
            return t.register_model(name, run, artifact_path, tg, wait_seconds);
          },
          py::arg("name"), py::arg("run"), py::arg("artifact_path") = "model", py::arg("tags") = py::none(),
          py::arg("wait_seconds") = 300.0, "Registers the run's model directory as a new version; waits for READY.")
      .def("get_model_version", &MlflowTracker::get_model_version, py::arg("name"), py::arg("version"), Release())
      .def("set_alias", &MlflowTracker::set_alias, py::arg("name"), py::arg("alias"), py::arg("version"), Release())
      .def("get_by_alias", &MlflowTracker::get_by_alias, py::arg("name"), py::arg("alias"), Release())
      .def("delete_alias", &MlflowTracker::delete_alias, py::arg("name"), py::arg("alias"), Release())
      .def("set_registered_model_tag", &MlflowTracker::set_registered_model_tag, py::arg("name"), py::arg("key"),
           py::arg("value"), Release())
      .def("set_model_version_tag", &MlflowTracker::set_model_version_tag, py::arg("name"), py::arg("version"),
           py::arg("key"), py::arg("value"), Release())
      .def("get_registered_model", &MlflowTracker::get_registered_model, py::arg("name"), Release())
      .def("search_model_versions", &MlflowTracker::search_model_versions, py::arg("filter") = "",
           py::arg("page_size") = 200, Release())
      .def("search_registered_models", &MlflowTracker::search_registered_models, py::arg("filter") = "",
           py::arg("page_size") = 100, Release())
      .def("lineage", &MlflowTracker::lineage, py::arg("name"), py::arg("version"), Release(),
           "Code commit, data commit, source, query, digest, params and final metrics of a model version.")
      .def("download_artifacts", &MlflowTracker::download_artifacts, py::arg("artifact_uri"), py::arg("dest_dir"),
           Release())
      .def("deliver_spooled", &MlflowTracker::deliver_spooled, Release())
      .def("read_artifact",
           [](MlflowTracker& t, const std::string& uri) {
             std::string bytes;
             {
               py::gil_scoped_release release;
               bytes = t.read_artifact(uri);
             }
             return py::bytes(bytes);
           },
           py::arg("artifact_uri"), "The bytes of one artifact file.")
      .def("call", &MlflowTracker::call, py::arg("method"), py::arg("path"), py::arg("body") = py::none(), Release(),
           "One REST call, path after /api/2.0/ (e.g. 'mlflow/runs/get'), for what the typed methods do not cover.");
}

}  // namespace mlops::python
