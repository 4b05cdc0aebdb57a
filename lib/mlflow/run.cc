// Run: logging, dataset lineage, artifacts and pyfunc model directories.

#include <exception>
#include <fstream>
#include <functional>

#include "core/hash.hpp"
#include "core/text.hpp"
#include "core/uri.hpp"
#include "mlflow/internal.hpp"
#include "mlflow/model_dir.hpp"
#include "mlops/dataset.hpp"
#include "mlops/error.hpp"
#include "mlops/tags.hpp"
#include "mlops/trainer.hpp"

namespace mlops {

namespace {

constexpr std::size_t kMaxParamValue = 6000;
constexpr std::size_t kMaxTagValue = 8000;

// Joins artifact path parts with '/', without empty parts; refuses "..".
std::string join_path(const std::string& a, const std::string& b) {
  std::string out;
  for (const std::string* part : {&a, &b}) {
    std::string p = *part;
    while (!p.empty() && p.front() == '/') p.erase(0, 1);
    while (!p.empty() && p.back() == '/') p.pop_back();
    if (p.empty()) continue;
    if (!out.empty()) out += '/';
    out += p;
  }
  std::size_t start = 0;
  while (start <= out.size()) {
    const auto end = out.find('/', start);
    const auto seg = out.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (seg == "..") throw ConfigError("artifact path must not contain '..': " + detail::quote_for_message(out));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

std::string file_sha256(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError("cannot read " + path.string());
  detail::Digest d("SHA256");
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) d.update(buf.data(), static_cast<std::size_t>(in.gcount()));
  }
  return d.hex();
}

// MLflow's log-inputs looks the dataset up by (experiment, name, digest) and inserts it when missing, in
// two steps: runs logging the same data at once on different server workers can all miss it, and every
// insert but the first then fails on the table's unique key (HTTP 400 with the database driver's
// IntegrityError or UniqueViolation). Nothing of the losing call is kept; asked again, the server finds
// the dataset and links it to the run (an input already linked is not linked twice).
bool lost_dataset_insert_race(const TrackingError& e) {
  if (e.http_status() != 400) return false;
  const std::string_view m = e.what();
  return m.find("IntegrityError") != std::string_view::npos || m.find("UniqueViolation") != std::string_view::npos;
}

}  // namespace

const char* detail::status_name(RunStatus s) {
  switch (s) {
    case RunStatus::Finished: return "FINISHED";
    case RunStatus::Failed: return "FAILED";
    case RunStatus::Killed: return "KILLED";
  }
  return "FINISHED";
}

// ---- Artifacts (Impl) --------------------------------------------------------------------------------

std::string MlflowTracker::Impl::artifact_root(const std::string& artifact_uri) const {
  constexpr std::string_view kScheme = "mlflow-artifacts:";
  if (artifact_uri.rfind(kScheme, 0) != 0)
    throw ConfigError("artifact URI " + detail::quote_for_message(artifact_uri) +
                      " is not served by the tracking server; start the server with artifact serving "
                      "(--artifacts-destination) so that runs get mlflow-artifacts:/ URIs");
  std::string rest = artifact_uri.substr(kScheme.size());
  if (rest.rfind("//", 0) == 0) {  // mlflow-artifacts://host:port/path
    const auto slash = rest.find('/', 2);
    rest = slash == std::string::npos ? "" : rest.substr(slash);
  }
  return join_path(rest, "");
}

std::string MlflowTracker::Impl::artifact_url(const std::string& rel_path) const {
  std::string url = base + "/api/2.0/mlflow-artifacts/artifacts";
  std::size_t start = 0;
  while (start < rel_path.size()) {
    auto end = rel_path.find('/', start);
    if (end == std::string::npos) end = rel_path.size();
    url += "/" + detail::url_escape(rel_path.substr(start, end - start));
    start = end + 1;
  }
  return url;
}

void MlflowTracker::Impl::upload_bytes(const std::string& bytes, const std::string& rel_path) {
  detail::HttpRequest req;
  req.method = "PUT";
  req.url = artifact_url(rel_path);
  req.body = bytes;
  auto r = http->send(req);
  if (r.status < 200 || r.status >= 300) raise(r, "uploading " + rel_path);
}

void MlflowTracker::Impl::upload(const std::filesystem::path& file, const std::string& rel_path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) throw ConfigError("not a readable file: " + file.string());
  detail::HttpRequest req;
  req.method = "PUT";
  req.url = artifact_url(rel_path);
  req.upload_file = file;
  auto r = http->send(req);
  if (r.status < 200 || r.status >= 300) raise(r, "uploading " + file.string() + " to " + rel_path);
}

std::vector<ArtifactInfo> MlflowTracker::Impl::list(const std::string& rel_path) {
  auto j = call("GET", "mlflow-artifacts/artifacts", {{"path", rel_path}});
  std::vector<ArtifactInfo> out;
  for (const auto& f : j.value("files", nlohmann::json::array())) {
    ArtifactInfo info;
    info.path = f.value("path", "");
    info.is_dir = f.value("is_dir", false);
    const auto size = f.value("file_size", nlohmann::json(0));
    info.file_size = size.is_string() ? std::stoll(size.get<std::string>()) : size.get<std::int64_t>();
    out.push_back(std::move(info));
  }
  return out;
}

std::filesystem::path MlflowTracker::Impl::download(const std::string& rel_path, const std::filesystem::path& dest_dir) {
  std::filesystem::create_directories(dest_dir);
  const auto slash = rel_path.rfind('/');
  const std::string leaf = slash == std::string::npos ? rel_path : rel_path.substr(slash + 1);
  const auto dest = dest_dir / (leaf.empty() ? "artifacts" : leaf);
  // A folder lists its entries; a file lists as nothing, so try the listing first.
  const auto entries = list(rel_path);
  if (!entries.empty()) {
    std::filesystem::create_directories(dest);
    for (const auto& e : entries) {
      const auto name = e.path.substr(e.path.rfind('/') == std::string::npos ? 0 : e.path.rfind('/') + 1);
      download(join_path(rel_path, name), dest);
    }
    return dest;
  }
  detail::HttpRequest req;
  req.method = "GET";
  req.url = artifact_url(rel_path);
  req.download_file = dest;
  auto r = http->send(req);
  if (r.status == 404) throw NotFoundError("artifact " + rel_path + " does not exist at " + shown);
  if (r.status < 200 || r.status >= 300) raise(r, "downloading artifact " + rel_path);
  return dest;
}

std::string MlflowTracker::Impl::read(const std::string& rel_path) {
  detail::HttpRequest req;
  req.method = "GET";
  req.url = artifact_url(rel_path);
  auto r = http->send(req);
  if (r.status == 404) throw NotFoundError("artifact " + rel_path + " does not exist at " + shown);
  if (r.status < 200 || r.status >= 300) raise(r, "reading artifact " + rel_path);
  return std::move(r.body);
}

void MlflowTracker::Impl::end_run(const std::string& run_id, RunStatus status, std::int64_t end_time_ms) {
  call("POST", "mlflow/runs/update",
       {{"run_id", run_id}, {"status", detail::status_name(status)}, {"end_time", end_time_ms}});
}

// ---- Run::State --------------------------------------------------------------------------------------

void Run::State::deliver(std::vector<detail::LogEntry> entries) {
  if (ended) throw ConfigError("run " + run_id + " has ended; start a new run to log more");
  {
    std::lock_guard lock(mutex);
    if (holding) {
      held.insert(held.end(), std::make_move_iterator(entries.begin()), std::make_move_iterator(entries.end()));
      return;
    }
  }
  if (sender) {
    sender->push(std::move(entries));
    return;
  }
  std::deque<detail::LogEntry> queue(std::make_move_iterator(entries.begin()), std::make_move_iterator(entries.end()));
  while (!queue.empty()) tracker->call("POST", "mlflow/runs/log-batch", detail::take_batch(run_id, queue));
}

void Run::State::release_held() {
  std::vector<detail::LogEntry> entries;
  {
    std::lock_guard lock(mutex);
    holding = false;
    entries.swap(held);
  }
  if (!entries.empty()) deliver(std::move(entries));
}

void Run::State::finish(RunStatus status) {
  {
    std::lock_guard lock(mutex);
    if (ended) return;
  }
  std::exception_ptr error;
  try {
    release_held();
  } catch (...) {
    // What was held did not reach the server: the run does not end FINISHED without it.
    error = std::current_exception();
    if (status == RunStatus::Finished) status = RunStatus::Failed;
  }
  if (sender) {
    try {
      sender->flush();
    } catch (...) {
      if (!error) error = std::current_exception();
    }
    sender->stop();
  }
  {
    std::lock_guard lock(mutex);
    if (ended) return;
    ended = true;
  }
  tracker->end_run(run_id, status, detail::now_ms());
  if (error) std::rethrow_exception(error);
}

Run::State::~State() {
  if (ended) return;
  try {
    finish(std::uncaught_exceptions() > 0 ? RunStatus::Failed : RunStatus::Finished);
  } catch (...) {
    // A destructor cannot report; what was not delivered stays in the spool file.
  }
}

// ---- Run ---------------------------------------------------------------------------------------------

const std::string& Run::id() const { return state_->run_id; }
const std::string& Run::experiment_id() const { return state_->experiment_id; }
const std::string& Run::name() const { return state_->name; }
const std::string& Run::artifact_uri() const { return state_->artifact_uri; }
bool Run::ended() const {
  std::lock_guard lock(state_->mutex);
  return state_->ended;
}

void Run::log_param(const std::string& key, const std::string& value) { log_params({{key, value}}); }

void Run::log_params(const std::map<std::string, std::string>& params) {
  std::vector<detail::LogEntry> entries;
  {
    std::lock_guard lock(state_->mutex);
    for (const auto& [k, v] : params) {
      detail::validate_key(k, "param");
      if (v.size() > kMaxParamValue)
        throw DataError("param " + detail::quote_for_message(k) + " has " + std::to_string(v.size()) +
                        " characters; MLflow allows at most 6000");
      if (auto it = state_->params.find(k); it != state_->params.end() && it->second != v)
        throw ConflictError("param " + detail::quote_for_message(k) + " of run " + state_->run_id +
                            " was logged as " + detail::quote_for_message(it->second) + "; params cannot change (got " +
                            detail::quote_for_message(v) + ")");
    }
    for (const auto& [k, v] : params) {
      if (state_->params.emplace(k, v).second)
        entries.push_back({detail::LogEntry::Kind::Param, k, v, 0, 0, 0});
    }
  }
  if (!entries.empty()) state_->deliver(std::move(entries));
}

void Run::log_metric(const std::string& key, double value, std::int64_t step, std::int64_t timestamp_ms) {
  log_metrics({{key, value}}, step, timestamp_ms);
}

void Run::log_metrics(const std::map<std::string, double>& metrics, std::int64_t step, std::int64_t timestamp_ms) {
  const std::int64_t ts = timestamp_ms < 0 ? detail::now_ms() : timestamp_ms;
  std::vector<detail::LogEntry> entries;
  entries.reserve(metrics.size());
  for (const auto& [k, v] : metrics) {
    detail::validate_key(k, "metric");
    entries.push_back({detail::LogEntry::Kind::Metric, k, {}, v, step, ts});
  }
  state_->deliver(std::move(entries));
}

void Run::set_tag(const std::string& key, const std::string& value) { set_tags({{key, value}}); }

void Run::set_tags(const std::map<std::string, std::string>& tags) {
  std::vector<detail::LogEntry> entries;
  for (const auto& [k, v] : tags) {
    detail::validate_key(k, "tag");
    if (v.size() > kMaxTagValue)
      throw DataError("tag " + detail::quote_for_message(k) + " has " + std::to_string(v.size()) +
                      " characters; MLflow allows at most 8000");
    entries.push_back({detail::LogEntry::Kind::Tag, k, v, 0, 0, 0});
  }
  state_->deliver(std::move(entries));
}

void Run::log_dataset(const Dataset& dataset, const std::string& context, const std::string& name) {
  const DatasetLineage& l = dataset.lineage();
  const std::string uri = detail::redact_uri(l.uri);
  const nlohmann::json source = {{"uri", uri},     {"commit", l.commit}, {"ref", l.ref},
                                 {"table", l.table}, {"query", l.query},   {"params", l.params}};
  const nlohmann::json schema = {{"label", l.label},     {"features", l.features}, {"text", l.text},
                                 {"classes", dataset.classes()}, {"featurizer", l.featurizer}};
  const nlohmann::json profile = {{"rows", dataset.rows()}, {"cols", dataset.cols()}, {"dropped_rows", l.dropped_rows}};
  std::string ds_name = name.empty() ? (l.table.empty() ? "dataset" : l.table) : name;
  if (ds_name.size() > 500) ds_name.resize(500);
  std::string ctx = context.substr(0, 500);
  const nlohmann::json body = {
      {"run_id", state_->run_id},
      {"datasets",
       {{{"tags", {{{"key", tags::kDataContext}, {"value", ctx}}}},
         {"dataset",
          {{"name", ds_name},
           {"digest", dataset.content_digest().substr(0, 36)},
           {"source_type", tags::kDatasetSourceType},
           {"source", source.dump()},
           {"schema", schema.dump()},
           {"profile", profile.dump()}}}}}}};
  for (int attempt = 1;; ++attempt) {
    try {
      state_->tracker->call("POST", "mlflow/runs/log-inputs", body);
      break;
    } catch (const TrackingError& e) {
      if (attempt == 3 || !lost_dataset_insert_race(e)) throw;
    }
  }
  std::map<std::string, std::string> lineage_tags = {{tags::kDataCommit, l.commit},
                                                     {tags::kDataUri, uri},
                                                     {tags::kDataTable, l.table},
                                                     {tags::kDataQuerySha256, detail::sha256_hex(l.query)},
                                                     {tags::kDataDigest, dataset.content_digest()},
                                                     {tags::kDataRows, std::to_string(dataset.rows())}};
  for (auto& [k, v] : lineage_tags)
    if (v.size() > kMaxTagValue) v.resize(kMaxTagValue);
  set_tags(lineage_tags);
}

void Run::log_bytes(const std::string& bytes, const std::string& artifact_file) {
  auto& t = *state_->tracker;
  const std::string file = join_path(artifact_file, "");
  if (file.empty()) throw ConfigError("artifact file name must not be empty");
  t.upload_bytes(bytes, join_path(t.artifact_root(state_->artifact_uri), file));
}

void Run::log_artifact(const std::filesystem::path& local_file, const std::string& artifact_path) {
  auto& t = *state_->tracker;
  t.upload(local_file, join_path(t.artifact_root(state_->artifact_uri),
                                 join_path(artifact_path, local_file.filename().string())));
}

void Run::log_artifacts(const std::filesystem::path& local_dir, const std::string& artifact_path) {
  std::error_code ec;
  if (!std::filesystem::is_directory(local_dir, ec)) throw ConfigError("not a folder: " + local_dir.string());
  auto& t = *state_->tracker;
  const std::string root = join_path(t.artifact_root(state_->artifact_uri), artifact_path);
  for (const auto& entry : std::filesystem::recursive_directory_iterator(local_dir)) {
    if (!entry.is_regular_file()) continue;
    const auto rel = std::filesystem::relative(entry.path(), local_dir).generic_string();
    t.upload(entry.path(), join_path(root, rel));
  }
}

std::vector<ArtifactInfo> Run::list_artifacts(const std::string& path) const {
  auto& t = *state_->tracker;
  const std::string root = t.artifact_root(state_->artifact_uri);
  const std::string dir = join_path(root, path);
  auto entries = t.list(dir);
  for (auto& e : entries) {
    // The server names entries relative to the listed folder; report them relative to the run's root.
    const auto leaf = e.path.substr(e.path.rfind('/') == std::string::npos ? 0 : e.path.rfind('/') + 1);
    e.path = join_path(path, leaf);
  }
  return entries;
}

std::filesystem::path Run::download_artifacts(const std::string& path, const std::filesystem::path& dest_dir) const {
  auto& t = *state_->tracker;
  return t.download(join_path(t.artifact_root(state_->artifact_uri), path), dest_dir);
}

namespace {

// Uploads a model directory (layout in model_dir.hpp): the weights (by `upload_weights`), then
// requirements.txt and MLmodel (with the lineage) from memory, and tags the run with the weights' SHA-256.
void upload_model_dir(Run& run, MlflowTracker::Impl& t, const std::string& artifact_path,
                      const std::string& weights_name, const std::string& sha, const nlohmann::json& lineage,
                      const std::function<void(const std::string&)>& upload_weights,
                      const nlohmann::json& signature = nullptr) {
  const std::string dir_name = artifact_path.empty() ? tags::kModelArtifactPath : artifact_path;
  const model_dir::TextFiles files = model_dir::text_files(dir_name, weights_name, sha, run.id(), lineage, signature);
  const std::string root = join_path(t.artifact_root(run.artifact_uri()), dir_name);
  upload_weights(join_path(root, weights_name));
  t.upload_bytes(files.requirements, join_path(root, model_dir::kRequirements));
  t.upload_bytes(files.mlmodel, join_path(root, model_dir::kMlmodel));
  run.set_tag(tags::model_sha256(dir_name), sha);
}

}  // namespace

void Run::log_adapter(const TrainedAdapter& trained, const std::string& artifact_path) {
  auto& t = *state_->tracker;
  const std::string bytes = trained.adapter.to_bytes();
  const Adapter& a = trained.adapter;
  upload_model_dir(*this, t, artifact_path, model_dir::kAdapterWeights, detail::sha256_hex(bytes), trained.lineage,
                   [&](const std::string& rel) { t.upload_bytes(bytes, rel); },
                   model_dir::signature(a.takes_text(), a.features(), a.integer_labels()));
}

void Run::log_model_file(const std::filesystem::path& weights_path, const nlohmann::json& lineage,
                         const std::string& artifact_path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(weights_path, ec))
    throw ConfigError("model weights file not found: " + weights_path.string());
  auto& t = *state_->tracker;
  upload_model_dir(*this, t, artifact_path, weights_path.filename().string(), file_sha256(weights_path), lineage,
                   [&](const std::string& rel) { t.upload(weights_path, rel); });
}

void Run::hold_logging() {
  std::lock_guard lock(state_->mutex);
  if (state_->ended) throw ConfigError("run " + state_->run_id + " has ended; start a new run to log more");
  state_->holding = true;
}

void Run::flush() {
  state_->release_held();
  if (state_->sender) state_->sender->flush();
}

void Run::end(RunStatus status) { state_->finish(status); }

}  // namespace mlops
