// Internals of the MLflow tracker shared by its source files.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <optional>
#include <filesystem>
#include <map>
#include <set>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "http/client.hpp"
#include "mlops/mlflow.hpp"

namespace mlops {

namespace detail {

/// One logged value waiting for delivery.
struct LogEntry {
  enum class Kind { Metric, Param, Tag } kind = Kind::Metric;
  std::string key;
  std::string text;     ///< param or tag value
  double value = 0;     ///< metric value
  std::int64_t step = 0;
  std::int64_t timestamp = 0;  ///< ms since the epoch
};

/// MLflow's log-batch limits.
inline constexpr std::size_t kMaxBatchMetrics = 1000;
inline constexpr std::size_t kMaxBatchParams = 100;
inline constexpr std::size_t kMaxBatchTags = 100;
inline constexpr std::size_t kMaxBatchEntities = 1000;
inline constexpr std::size_t kMaxBatchBytes = 900 * 1024;  // under the server's 1 MB, with room for framing

/// Takes entries from the front of `queue` into one log-batch body for `run_id`, within the limits.
nlohmann::json take_batch(const std::string& run_id, std::deque<LogEntry>& queue);

/// Checks a param/metric/tag key as MLflow does. @throws DataError naming `what` and the key
void validate_key(const std::string& key, const char* what);

/// A random 32-hex-digit id (UUID4 without dashes).
std::string random_hex_id();

/// Milliseconds since the epoch.
std::int64_t now_ms();

/// MLflow's tag/param lists ([{key, value}] or an object) as a map.
std::map<std::string, std::string> tag_map(const nlohmann::json& tags);
/// A map as MLflow's [{key, value}] list.
nlohmann::json tag_list(const std::map<std::string, std::string>& tags);
/// `s` as a quoted literal of MLflow's search syntax.
std::string query_literal(const std::string& s);
/// A number MLflow sends as a number or a string; 0 when it is neither.
std::int64_t to_int64(const nlohmann::json& j);
/// A metric value (MLflow sends NaN and the infinities as strings).
double to_double(const nlohmann::json& j);

/// MLflow's name of a run status.
const char* status_name(RunStatus status);

}  // namespace detail

struct MlflowTracker::Impl {
  MlflowOptions options;
  std::string base;    ///< tracking URI without a trailing slash
  std::string shown;   ///< base with credentials removed, for messages
  std::unique_ptr<detail::HttpClient> http;
  std::mutex experiments_mutex;
  std::map<std::string, std::string> experiments;
  std::mutex models_mutex;
  std::set<std::string> known_models;  ///< registered models seen to exist: register_model skips creating them
  std::filesystem::path spool_dir;
  std::once_flag source_once;
  SourceInfo source;  ///< the code version, detected once per tracker

  explicit Impl(MlflowOptions opts);

  std::string api_url(const std::string& path, const nlohmann::json& query = {}) const;
  /// Sends and returns the response, whatever it is. `retries` < 0: the configured number.
  detail::HttpResponse send(const std::string& method, const std::string& path, const nlohmann::json& body,
                            int retries = -1);
  /// Sends and parses a 2xx answer; throws the typed error for anything else.
  nlohmann::json call(const std::string& method, const std::string& path, const nlohmann::json& body = {},
                      int retries = -1);
  /// POSTs a create; before each retry `find` looks for what an earlier attempt may have created (its
  /// answer lost) and, when found, that is the answer. Throws the typed error otherwise.
  nlohmann::json create_once(const std::string& path, const nlohmann::json& body,
                             const std::function<std::optional<nlohmann::json>()>& find, const std::string& what);
  /// Calls a paginated endpoint until the last page, passing each element of `items` to `fn`.
  void each_page(const std::string& method, const std::string& path, nlohmann::json request, const char* items,
                 const std::function<void(nlohmann::json&)>& fn);
  [[noreturn]] void raise(const detail::HttpResponse& r, const std::string& what) const;

  std::string experiment_id(const std::string& name);
  /// `mlflow-artifacts:/1/<run>/artifacts` → `1/<run>/artifacts`. @throws ConfigError for another scheme
  std::string artifact_root(const std::string& artifact_uri) const;
  std::string artifact_url(const std::string& rel_path) const;
  void upload(const std::filesystem::path& file, const std::string& rel_path);
  void upload_bytes(const std::string& bytes, const std::string& rel_path);
  std::vector<ArtifactInfo> list(const std::string& rel_path);
  std::filesystem::path download(const std::string& rel_path, const std::filesystem::path& dest_dir);
  /// The bytes of one artifact file. @throws NotFoundError when it does not exist
  std::string read(const std::string& rel_path);
  /// Sets a run's status and end time.
  void end_run(const std::string& run_id, RunStatus status, std::int64_t end_time_ms);
};

/// The background sender of one run: a bounded queue, batches, retries and the spool file.
class Sender {
 public:
  Sender(std::shared_ptr<MlflowTracker::Impl> tracker, std::string run_id);
  ~Sender();
  void push(std::vector<detail::LogEntry> entries);
  void flush();
  /// Stops the thread; entries it could not deliver stay in the spool file.
  void stop();

 private:
  void loop();
  void spool_queue_locked();
  void append_to_spool(const std::vector<std::string>& lines);
  bool drain_spool();  // true when the spool is empty afterwards
  std::size_t pending_locked() const;

  std::shared_ptr<MlflowTracker::Impl> tracker_;
  std::string run_id_;
  std::filesystem::path spool_path_;
  std::mutex mutex_;
  std::condition_variable work_cv_, space_cv_, idle_cv_;
  std::deque<detail::LogEntry> queue_;
  bool stopping_ = false;
  bool busy_ = false;
  bool outage_ = false;
  bool spool_pending_ = false;
  std::size_t spooled_entries_ = 0;
  std::uintmax_t spool_offset_ = 0;
  std::exception_ptr error_;
  std::thread thread_;
};

struct Run::State {
  std::shared_ptr<MlflowTracker::Impl> tracker;
  std::string run_id, experiment_id, name, artifact_uri;
  std::mutex mutex;
  std::map<std::string, std::string> params;
  std::unique_ptr<Sender> sender;
  bool ended = false;
  bool holding = false;                  ///< hold_logging(): entries wait in `held` for flush()/end()
  std::vector<detail::LogEntry> held;

  void deliver(std::vector<detail::LogEntry> entries);
  /// Sends what was held (if anything) and stops holding.
  void release_held();
  void finish(RunStatus status);
  ~State();
};

}  // namespace mlops
