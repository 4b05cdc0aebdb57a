// MlflowTracker end to end against a real `mlflow server` (the project's .venv has it), started here on
// loopback with a SQLite store in a temporary folder and stopped at the end.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include "http/client.hpp"
#include "mlflow/model_dir.hpp"
#include "mlops/dataset.hpp"
#include "mlops/config.hpp"
#include "mlops/error.hpp"
#include "mlops/mlflow.hpp"
#include "mlops/tags.hpp"
#include "required.hpp"

using namespace mlops;
namespace fs = std::filesystem;

namespace {

class Server {
 public:
  Server() {
    exe_ = fs::path(MLOPS_SOURCE_DIR) / ".venv" / "bin" / "mlflow";
    if (!fs::exists(exe_)) return;
    root_ = fs::temp_directory_path() / ("mlops-cpp-mlflow-" + std::to_string(::getpid()));
    fs::create_directories(root_ / "artifacts");
    const std::string store = "sqlite:///" + (root_ / "mlflow.db").string();
    const std::string artifacts = (root_ / "artifacts").string();
    const std::string log = (root_ / "server.log").string();
    // Port 0: the server binds a free port itself and names it in its log, where it is read back.
    std::vector<std::string> argv = {exe_.string(), "server", "--backend-store-uri", store, "--artifacts-destination",
                                     artifacts, "--host", "127.0.0.1", "--port", "0", "--workers", "1"};
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setsid();
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (fd >= 0) {
        ::dup2(fd, STDOUT_FILENO);
        ::dup2(fd, STDERR_FILENO);
      }
      ::unsetenv("MLFLOW_TRACKING_URI");
      ::setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false", 0);  // MLflow's GenAI job runner: unused here
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    detail::HttpClient http({}, {}, 2, detail::RetryPolicy{0, 0, 0, 0, 0, {}});
    detail::HttpRequest req;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
    while (std::chrono::steady_clock::now() < deadline) {
      if (port_ == 0) port_ = bound_port(log);
      if (port_ == 0) {
        if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
          pid_ = -1;
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        continue;
      }
      req.url = url() + "/health";
      if (http.perform(req).status == 200) {
        up_ = true;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  ~Server() {
    if (pid_ > 0) {
      ::kill(-pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      ::kill(-pid_, SIGKILL);  // worker processes of its group that outlive it
    }
    std::error_code ec;
    if (!root_.empty()) fs::remove_all(root_, ec);
  }
  [[nodiscard]] bool available() const { return fs::exists(exe_); }
  // The port in uvicorn's "Uvicorn running on http://127.0.0.1:PORT" line, 0 until it is there.
  static int bound_port(const std::string& log) {
    std::ifstream in(log);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string mark = "Uvicorn running on http://127.0.0.1:";
    const auto at = text.find(mark);
    if (at == std::string::npos) return 0;
    const auto digits = text.substr(at + mark.size(), 5);
    return std::atoi(digits.c_str());
  }
  [[nodiscard]] bool up() const { return up_; }
  [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  [[nodiscard]] const fs::path& root() const { return root_; }

 private:
  fs::path exe_, root_;
  int port_ = 0;
  pid_t pid_ = -1;
  bool up_ = false;
};

// Options of a tracker of the started server (its spool inside the server's folder).
MlflowOptions options_for(const Server& server) {
  REQUIRE(server.up());
  MlflowOptions o = MlflowOptions::from_env(server.url());
  o.spool_dir = server.root() / "spool";
  return o;
}

}  // namespace

TEST_CASE("MlflowTracker against a real MLflow server: runs, lineage, artifacts, registry, aliases") {
  Server server;
  if (!mlops::test::require_component(server.available(), "no .venv/bin/mlflow in the source tree (run `make setup`)"))
    return;
  MlflowTracker tracker(options_for(server));

  DatasetLineage lineage;
  lineage.commit = "abc123";
  lineage.uri = "doltlite:///data/training.db";
  lineage.table = "reviews";
  lineage.query = "SELECT a, label FROM reviews";
  Dataset ds({1, 2, 3, 4}, 4, 1, {0, 1, 0, 1}, {"no", "yes"}, lineage);

  std::string run_id;
  {
    Run run = tracker.start_run("cpp", "cpp-run", {{"team", "core"}});
    run_id = run.id();
    run.log_params({{"lr", "0.1"}});
    CHECK_THROWS_AS(run.log_param("lr", "0.2"), ConflictError);
    for (int step = 0; step < 50; ++step) run.log_metrics({{"loss", 1.0 / (step + 1)}, {"acc", step * 0.01}}, step);
    run.log_dataset(ds);
    const auto weights = server.root() / "w.bin";
    std::ofstream(weights) << "weights";
    run.log_model_file(weights, {{"adapter", "a1"}});
    run.end();
    CHECK(run.ended());
  }
  const auto got = tracker.get_run(run_id);
  CHECK(got.status == "FINISHED");
  CHECK(tracker.metric_history(run_id, "loss").size() == 50);

  // A run dropped while an exception propagates ends FAILED.
  std::string failed_id;
  try {
    Run run = tracker.start_run("cpp");
    failed_id = run.id();
    throw std::runtime_error("training diverged");
  } catch (const std::runtime_error&) {
  }
  CHECK(tracker.get_run(failed_id).status == "FAILED");

  // Held logging: nothing reaches the server until end(), then all of it at once.
  {
    Run run = tracker.start_run("cpp", "held");
    run.hold_logging();
    run.log_params({{"epochs", "3"}});
    for (int epoch = 0; epoch < 3; ++epoch) run.log_metrics({{"loss", 1.0 / (epoch + 1)}}, epoch);
    run.set_tag("stage", "recorded");
    auto before = tracker.get_run(run.id());
    CHECK(before.params.empty());
    CHECK(before.metrics.empty());
    run.end();
    auto after = tracker.get_run(run.id());
    CHECK(after.status == "FINISHED");
    CHECK(after.params.size() == 1);
    CHECK(tracker.metric_history(run.id(), "loss").size() == 3);
    CHECK_THROWS_AS(run.hold_logging(), ConfigError);
  }

  // Registry: register the model directory of a run.
  const std::string name = "cpp-model-" + std::to_string(::getpid());
  Run with_model = tracker.start_run("cpp", "with-model");
  const auto weights = server.root() / "w2.bin";
  std::ofstream(weights) << "w2";
  with_model.log_model_file(weights, nlohmann::json::object());
  with_model.log_dataset(ds);
  with_model.log_metric("val_acc", 0.75);
  with_model.end();
  const ModelVersion v1 = tracker.register_model(name, with_model);
  CHECK(v1.version == 1);
  CHECK(v1.status == "READY");
  tracker.set_alias(name, "production", 1);
  CHECK(tracker.get_by_alias(name, "production").version == 1);
  tracker.delete_alias(name, "production");
  CHECK_THROWS_AS(tracker.get_by_alias(name, "production"), NotFoundError);
  const auto lin = tracker.lineage(name, 1);
  CHECK(lin["data_commit"] == "abc123");
  CHECK(lin["table"] == "reviews");
  CHECK(lin["query"] == "SELECT a, label FROM reviews");
  CHECK(lin["digest"] == ds.content_digest());
  CHECK(lin["metrics"]["val_acc"] == 0.75);
  const auto files = with_model.list_artifacts("model");
  CHECK(files.size() == 3);  // MLmodel (with the lineage), the weights, requirements.txt
  const auto dl = with_model.download_artifacts("model/w2.bin", server.root() / "dl");
  std::ifstream in(dl);
  std::string content;
  in >> content;
  CHECK(content == "w2");
}

TEST_CASE("MlflowTracker typed records against a real MLflow server: RunInfo, end_run, set_run_tag, bytes, models") {
  Server server;
  if (!mlops::test::require_component(server.available(), "no .venv/bin/mlflow in the source tree (run `make setup`)"))
    return;
  MlflowTracker tracker(options_for(server));
  const std::string exp = tracker.experiment_id("typed");

  // A run that an interrupted process left RUNNING (created with no Run handle here): found by a search,
  // read back typed, and ended by id.
  const auto created = tracker.call(
      "POST", "mlflow/runs/create",
      {{"experiment_id", exp},
       {"start_time", 1700000000000},
       {"run_name", "left-running"},
       {"tags", {{{"key", "team"}, {"value", "core"}}, {{"key", tags::kFingerprint}, {"value", "fp-1"}}}}});
  const std::string left = created.at("run").at("info").at("run_id").get<std::string>();
  tracker.call("POST", "mlflow/runs/log-batch",
               {{"run_id", left},
                {"params", {{{"key", "epochs"}, {"value", "3"}}}},
                {"metrics",
                 {{{"key", "loss"}, {"value", 0.5}, {"timestamp", 1700000000001}, {"step", 0}},
                  {{"key", "loss"}, {"value", 0.25}, {"timestamp", 1700000000002}, {"step", 1}}}}});
  const RunInfo info = tracker.get_run(left);
  CHECK(info.run_id == left);
  CHECK(info.experiment_id == exp);
  CHECK(info.name == "left-running");
  CHECK(info.status == "RUNNING");
  CHECK(info.start_time == 1700000000000);
  CHECK(info.end_time == 0);
  CHECK(info.tag("team") == "core");
  CHECK(info.tag(tags::kRunName) == "left-running");
  CHECK(info.tag("absent").empty());
  CHECK(info.params.at("epochs") == "3");
  CHECK(info.metrics.at("loss") == 0.25);  // the latest step's value
  CHECK(info.artifact_uri.rfind("mlflow-artifacts:", 0) == 0);

  {
    Run finished = tracker.start_run("typed", "finished");
    finished.end();
  }
  const auto running = tracker.search_runs({exp}, "attributes.status = 'RUNNING'");
  REQUIRE(running.size() == 1);
  CHECK(running[0].run_id == left);
  CHECK(running[0].tag(tags::kFingerprint) == "fp-1");
  const auto all = tracker.search_runs({exp}, "", 1);  // one run a page: both pages followed, newest first
  REQUIRE(all.size() == 2);
  CHECK(all[0].name == "finished");
  CHECK(all[1].run_id == left);

  tracker.end_run(left, RunStatus::Killed, 1700000000500);
  const RunInfo killed = tracker.get_run(left);
  CHECK(killed.status == "KILLED");
  CHECK(killed.end_time == 1700000000500);
  CHECK(tracker.search_runs({exp}, "attributes.status = 'RUNNING'").empty());
  CHECK_THROWS_AS(tracker.end_run(std::string(32, '0'), RunStatus::Finished), NotFoundError);

  // Tags of any run, by id; a later value replaces an earlier one.
  tracker.set_run_tag(left, tags::kReleaseState, tags::kStateRecording);
  tracker.set_run_tag(left, tags::kReleaseState, tags::kStateComplete);
  CHECK(tracker.get_run(left).tag(tags::kReleaseState) == "complete");
  CHECK_THROWS_AS(tracker.set_run_tag(left, "no!good", "x"), DataError);
  CHECK_THROWS_AS(tracker.set_run_tag(std::string(32, '0'), "k", "v"), NotFoundError);

  // Bytes go up from memory and come back byte for byte, binary included.
  Run run = tracker.start_run("typed", "bytes");
  const std::string payload = std::string("{\"a\":1}\n") + std::string("\0\xff", 2);
  run.log_bytes(payload, "docs/manifest.json");
  CHECK(tracker.read_artifact(run.artifact_uri() + "/docs/manifest.json") == payload);
  const auto listed = run.list_artifacts("docs");
  REQUIRE(listed.size() == 1);
  CHECK(listed[0].file_size == static_cast<std::int64_t>(payload.size()));
  CHECK_THROWS_AS(tracker.read_artifact(run.artifact_uri() + "/docs/absent.json"), NotFoundError);
  CHECK_THROWS_AS(run.log_bytes("x", "../escape.txt"), ConfigError);
  CHECK_THROWS_AS(run.log_bytes("x", ""), ConfigError);

  // A model directory as the run writes it reads back through its one owner.
  const auto weights = server.root() / "typed.safetensors";
  std::ofstream(weights) << "weights";
  run.log_model_file(weights, {{"adapter", "a1"}});
  run.end();
  const model_dir::Contents model = model_dir::read(run.download_artifacts("model", server.root() / "typed-dl"));
  CHECK(model.weights == "typed.safetensors");
  CHECK(model.requirements == std::vector<std::string>{"mlops-dolt==" MLOPS_VERSION_STRING, "numpy", "pandas"});
  CHECK(model.lineage["adapter"] == "a1");
  CHECK(model.lineage["run_id"] == run.id());
  CHECK(tracker.get_run(run.id()).tag(tags::model_sha256("model")).size() == 64);

  // Registered models, typed: description, tags and aliases.
  const std::string name = "typed-model-" + std::to_string(::getpid());
  tracker.create_registered_model(name, {{"owner", "team"}}, "adapters");
  CHECK(tracker.register_model(name, run).version == 1);
  tracker.set_alias(name, "production", 1);
  const RegisteredModel m = tracker.get_registered_model(name);
  CHECK(m.name == name);
  CHECK(m.description == "adapters");
  CHECK(m.tags == std::map<std::string, std::string>{{"owner", "team"}});
  CHECK(m.aliases == std::map<std::string, std::int64_t>{{"production", 1}});
  CHECK(m.creation_timestamp > 0);
  const auto found = tracker.search_registered_models("name = '" + name + "'");
  REQUIRE(found.size() == 1);
  CHECK(found[0].aliases.at("production") == 1);
  CHECK_THROWS_AS(tracker.get_registered_model(name + "-absent"), NotFoundError);
}
