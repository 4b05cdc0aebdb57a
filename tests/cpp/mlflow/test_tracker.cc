#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <thread>

#include "http/client.hpp"
#include "mlflow/internal.hpp"
#include "mlops/dataset.hpp"
#include "mlops/error.hpp"
#include "mlops/mlflow.hpp"

using namespace mlops;
namespace fs = std::filesystem;

namespace {

// A loopback HTTP listener answering each connection's requests from a script of raw responses.
class ScriptedServer {
 public:
  explicit ScriptedServer(std::vector<std::string> answers) : answers_(std::move(answers)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    ::listen(fd_, 16);
    thread_ = std::thread([this] { serve(); });
  }
  ~ScriptedServer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::atomic<int> served{0};

 private:
  void serve() {
    std::size_t next = 0;
    while (!stop_) {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      while (next < answers_.size()) {
        std::string req;
        char buf[4096];
        while (req.find("\r\n\r\n") == std::string::npos) {
          const ssize_t n = ::read(c, buf, sizeof buf);
          if (n <= 0) break;
          req.append(buf, static_cast<std::size_t>(n));
        }
        if (req.empty()) break;
        const auto& a = answers_[next++];
        ++served;
        if (::write(c, a.data(), a.size()) < 0) break;
      }
      ::close(c);
    }
  }
  std::vector<std::string> answers_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::string answer(int status, const std::string& body, const std::string& extra = "") {
  return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n" + extra + "\r\n" + body;
}

}  // namespace

TEST_CASE("log batches stay within MLflow's limits and keep every entry in order") {
  std::deque<detail::LogEntry> q;
  for (int i = 0; i < 2500; ++i) q.push_back({detail::LogEntry::Kind::Metric, "m", {}, double(i), i, 1});
  for (int i = 0; i < 250; ++i) q.push_back({detail::LogEntry::Kind::Param, "p" + std::to_string(i), "v", 0, 0, 0});
  for (int i = 0; i < 300; ++i)
    q.push_back({detail::LogEntry::Kind::Tag, "t" + std::to_string(i), std::string(7000, 'x'), 0, 0, 0});
  std::size_t metrics = 0, params = 0, tags = 0;
  double expect = 0;
  while (!q.empty()) {
    const auto body = detail::take_batch("run", q);
    const std::size_t m = body.value("metrics", nlohmann::json::array()).size();
    const std::size_t p = body.value("params", nlohmann::json::array()).size();
    const std::size_t t = body.value("tags", nlohmann::json::array()).size();
    CHECK(m <= 1000);
    CHECK(p <= 100);
    CHECK(t <= 100);
    CHECK(m + p + t <= 1000);
    CHECK(m + p + t > 0);
    CHECK(body.dump().size() <= 1000 * 1000);
    for (const auto& e : body.value("metrics", nlohmann::json::array())) CHECK(e["value"].get<double>() == expect++);
    metrics += m, params += p, tags += t;
  }
  CHECK(metrics == 2500);
  CHECK(params == 250);
  CHECK(tags == 300);
}

TEST_CASE("non-finite metric values are sent the way MLflow's JSON expects") {
  std::deque<detail::LogEntry> q;
  q.push_back({detail::LogEntry::Kind::Metric, "a", {}, std::nan(""), 0, 1});
  q.push_back({detail::LogEntry::Kind::Metric, "b", {}, -HUGE_VAL, 0, 1});
  const auto body = detail::take_batch("run", q);
  CHECK(body["metrics"][0]["value"] == "NaN");
  CHECK(body["metrics"][1]["value"] == "-Infinity");
}

TEST_CASE("keys are checked as MLflow does") {
  CHECK_NOTHROW(detail::validate_key("train/loss epoch-1.a:b c", "metric"));
  CHECK_THROWS_AS(detail::validate_key("", "metric"), DataError);
  CHECK_THROWS_AS(detail::validate_key("bad$key", "param"), DataError);
  CHECK_THROWS_AS(detail::validate_key(std::string(251, 'k'), "tag"), DataError);
}

TEST_CASE("backoff doubles from the factor, jitter on top") {
  detail::RetryPolicy p;
  p.backoff_factor = 2;
  p.backoff_jitter = 0;
  CHECK(p.backoff(1) == doctest::Approx(2));
  CHECK(p.backoff(2) == doctest::Approx(4));
  CHECK(p.backoff(3) == doctest::Approx(8));
  p.backoff_jitter = 1;
  const double j = p.backoff(1);
  CHECK(j >= 2);
  CHECK(j <= 3);
}

TEST_CASE("options from the environment, and their errors") {
  ::setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3", 1);
  ::setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "9", 1);
  auto o = MlflowOptions::from_env("http://127.0.0.1:1");
  CHECK(o.max_retries == 3);
  CHECK(o.timeout_seconds == 9);
  ::setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "lots", 1);
  CHECK_THROWS_AS(MlflowOptions::from_env("http://127.0.0.1:1"), ConfigError);
  ::unsetenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES");
  ::unsetenv("MLFLOW_HTTP_REQUEST_TIMEOUT");
  ::setenv("MLFLOW_TRACKING_INSECURE_TLS", "maybe", 1);
  CHECK_THROWS_AS(MlflowOptions::from_env("http://127.0.0.1:1"), ConfigError);
  ::unsetenv("MLFLOW_TRACKING_INSECURE_TLS");

  MlflowOptions both;
  both.tracking_uri = "https://127.0.0.1:1";
  both.insecure_tls = true;
  both.server_cert_path = "/tmp/ca.pem";
  CHECK_THROWS_AS(MlflowTracker{both}, ConfigError);
  CHECK_THROWS_AS(MlflowTracker{"file:///tmp/mlruns"}, ConfigError);
}

TEST_CASE("HTTP client retries 503 and 429, honours Retry-After, and gives up after the retries") {
  ScriptedServer server({answer(503, "{}", "Retry-After: 0\r\n"), answer(429, "{}", "Retry-After: 0\r\n"),
                         answer(200, R"({"ok": true})")});
  detail::RetryPolicy retry;
  retry.backoff_factor = 5;  // would be slow: Retry-After: 0 must win
  retry.backoff_jitter = 0;
  detail::HttpClient http({}, {}, 10, retry);
  detail::HttpRequest req;
  req.url = server.url() + "/x";
  const auto r = http.send(req);
  CHECK(r.status == 200);
  CHECK(r.attempts == 3);
  CHECK(r.body == R"({"ok": true})");
  CHECK(r.waited_seconds == 0);  // the backoff would have waited 5 + 10 s

  ScriptedServer later({answer(503, "{}", "Retry-After: 1\r\n"), answer(200, "{}")});
  retry.max_retry_after = 0.25;  // a server's Retry-After is capped
  detail::HttpClient capped({}, {}, 10, retry);
  req.url = later.url() + "/x";
  const auto r1 = capped.send(req);
  CHECK(r1.status == 200);
  CHECK(r1.waited_seconds == doctest::Approx(0.25));

  ScriptedServer failing({answer(503, "{}"), answer(503, "{}"), answer(503, "{}")});
  retry.backoff_factor = 0.01;
  detail::HttpClient http2({}, {}, 10, retry);
  req.url = failing.url() + "/x";
  const auto r2 = http2.send_with_retries(req, 2);
  CHECK(r2.status == 503);
  CHECK(r2.attempts == 3);
}

TEST_CASE("HTTP client keeps a large successful answer whole") {
  const std::string big = "\"" + std::string(3 << 20, 'x') + "\"";
  ScriptedServer server({answer(200, big)});
  detail::HttpClient http({}, {}, 10, detail::RetryPolicy{});
  detail::HttpRequest req;
  req.url = server.url() + "/big";
  const auto r = http.perform(req);
  CHECK(r.status == 200);
  CHECK(r.body.size() == big.size());
}

TEST_CASE("server errors become typed errors without credentials") {
  ScriptedServer server({answer(404, R"({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Run 'x' not found"})"),
                         answer(400, R"({"error_code": "RESOURCE_ALREADY_EXISTS", "message": "exists"})"),
                         answer(400, R"({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad"})"),
                         answer(401, "denied")});
  MlflowOptions o;
  o.tracking_uri = server.url();
  o.username = "alice";
  o.password = "pa55-secret";
  o.max_retries = 0;
  MlflowTracker t(o);
  CHECK_THROWS_AS(t.get_run("x"), NotFoundError);
  CHECK_THROWS_AS(t.call("POST", "mlflow/experiments/create", {{"name", "e"}}), ConflictError);
  try {
    t.call("POST", "mlflow/runs/log-batch", {{"run_id", "x"}});
    FAIL("expected TrackingError");
  } catch (const TrackingError& e) {
    CHECK(e.http_status() == 400);
    CHECK(e.error_code() == "INVALID_PARAMETER_VALUE");
  }
  try {
    t.call("GET", "mlflow/experiments/get-by-name", {{"experiment_name", "e"}});
    FAIL("expected TrackingError");
  } catch (const TrackingError& e) {
    CHECK(e.http_status() == 401);
    CHECK(std::string(e.what()).find("pa55-secret") == std::string::npos);
    CHECK(std::string(e.what()).find("credentials") != std::string::npos);
  }
}

TEST_CASE("source info comes from the git repository or from GitHub Actions' environment") {
  const auto here = detect_source_info(MLOPS_SOURCE_DIR);
  if (fs::exists(fs::path(MLOPS_SOURCE_DIR) / ".git")) {
    CHECK(here.commit.size() == 40);
  }
  CHECK(here.source_type == "LOCAL");
  ::setenv("GITHUB_ACTIONS", "true", 1);
  ::setenv("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567", 1);
  ::setenv("GITHUB_REF_NAME", "release", 1);
  ::setenv("GITHUB_SERVER_URL", "https://github.example", 1);
  ::setenv("GITHUB_REPOSITORY", "org/repo", 1);
  const auto gh = detect_source_info();
  ::unsetenv("GITHUB_ACTIONS");
  CHECK(gh.commit == "0123456789abcdef0123456789abcdef01234567");
  CHECK(gh.branch == "release");
  CHECK(gh.repo_url == "https://github.example/org/repo");
  CHECK(gh.source_type == "JOB");
}
