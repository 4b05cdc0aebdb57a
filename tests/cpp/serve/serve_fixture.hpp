// A release folder on disk and a raw HTTP/1.1 client, for the server tests.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <utility>

#include "core/hash.hpp"
#include "mlops/adapter.hpp"
#include "mlops/featurizer.hpp"
#include "mlops/manifest.hpp"
#include "mlops/serve.hpp"

namespace serve_test {

namespace fs = std::filesystem;

inline fs::path temp_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("mlops-serve-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// A text adapter (column "body") whose labels carry `prefix`, so an answer tells which release gave it.
inline mlops::Adapter text_adapter(const std::string& prefix, unsigned seed, std::size_t d = 16, std::size_t k = 3) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0, 1);
  std::vector<float> w(d * k + k);
  for (auto& v : w) v = n(rng);
  std::vector<std::string> classes;
  for (std::size_t c = 0; c < k; ++c) classes.push_back(prefix + std::to_string(c));
  return mlops::Adapter(d, 0, classes, w, mlops::Featurizer(static_cast<int>(d), 1, "body").settings(), {},
                        {{"commit", "c0ffee" + prefix}, {"code_commit", "abc123"}});
}

// A numeric adapter over features f0..f{d-1}.
inline mlops::Adapter numeric_adapter(std::vector<std::string> classes, std::size_t d = 3) {
  std::vector<float> w(d * classes.size() + classes.size(), 0.0f);
  for (std::size_t i = 0; i < d; ++i) w[i * classes.size() + (i % classes.size())] = 1.0f;
  nlohmann::json features = nlohmann::json::array();
  for (std::size_t i = 0; i < d; ++i) features.push_back("f" + std::to_string(i));
  return mlops::Adapter(d, 0, std::move(classes), w, {}, {}, {{"features", features}, {"commit", "d1"}});
}

// Writes a build-context-shaped release folder: manifest.json, lineage.json, models/<name>/model/{MLmodel,weights}.
inline std::string write_release(const fs::path& dir, const std::map<std::string, std::pair<std::int64_t, mlops::Adapter>>& models,
                                 const std::string& image_repo = "registry.example/adapters") {
  fs::create_directories(dir / "models");
  std::map<std::string, std::int64_t> entries;
  nlohmann::json lineage = nlohmann::json::object();
  for (const auto& [name, vm] : models) {
    entries[name] = vm.first;
    auto root = dir / "models" / name / "model";
    fs::create_directories(root);
    vm.second.save(root / "adapter.safetensors");
    std::ofstream(root / "MLmodel") << "artifact_path: model\nflavors:\n  python_function:\n    data: adapter.safetensors\n"
                                       "    loader_module: mlops.pyfunc\n  mlops:\n    weights_sha256: \""
                                    << mlops::detail::sha256_hex(vm.second.to_bytes()) << "\"\n";
    lineage[name] = {{"version", vm.first}, {"data_commit", "data-" + name}, {"code_commit", "code-1"}, {"run_id", "r-" + name}};
  }
  mlops::ReleaseManifest m(entries);
  std::ofstream(dir / "manifest.json") << m.to_json();
  std::ofstream(dir / "lineage.json") << lineage.dump();
  std::ofstream(dir / "release.json") << nlohmann::json{{"md5", m.md5()}, {"image", m.image_tag(image_repo)}}.dump();
  return m.md5();
}

struct Reply {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  [[nodiscard]] nlohmann::json json() const { return nlohmann::json::parse(body); }
};

// A blocking HTTP/1.1 client on one keep-alive connection.
class Client {
 public:
  explicit Client(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("connect failed");
    timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~Client() { ::close(fd_); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  void send_raw(const std::string& bytes) {
    std::size_t off = 0;
    while (off < bytes.size()) {
      auto n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) throw std::runtime_error("send failed");
      off += static_cast<std::size_t>(n);
    }
  }
  Reply request(const std::string& method, const std::string& target, const std::string& body = {},
                const std::string& extra_headers = {}, const std::string& content_type = "application/json") {
    std::string req = method + " " + target + " HTTP/1.1\r\nHost: localhost\r\n" + extra_headers;
    if (!body.empty() || method == "POST")
      req += "Content-Type: " + content_type + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    req += "\r\n" + body;
    send_raw(req);
    return read_reply();
  }
  Reply post(const std::string& target, const nlohmann::json& body, const std::string& extra = {}) {
    return request("POST", target, body.dump(), extra);
  }
  // Reads one response; status 0 when the server closed the connection first.
  Reply read_reply() {
    Reply r;
    std::size_t head_end;
    while ((head_end = buf_.find("\r\n\r\n")) == std::string::npos)
      if (!fill()) return r;
    std::string head = buf_.substr(0, head_end);
    buf_.erase(0, head_end + 4);
    r.status = std::stoi(head.substr(9, 3));
    std::size_t pos = head.find("\r\n");
    while (pos != std::string::npos && pos + 2 < head.size()) {
      auto next = head.find("\r\n", pos + 2);
      auto line = head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
      auto colon = line.find(':');
      std::string name = line.substr(0, colon);
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      r.headers[name] = line.substr(colon + 2);
      pos = next;
    }
    // A reply to HEAD, or a 1xx, has no body whatever Content-Length says.
    const auto len = head_only_ || r.status < 200 ? 0 : std::stoul(r.headers.count("content-length") ? r.headers["content-length"] : "0");
    while (buf_.size() < len)
      if (!fill()) break;
    r.body = buf_.substr(0, len);
    buf_.erase(0, std::min(len, buf_.size()));
    return r;
  }
  // The next reply answers a HEAD request.
  void expect_head_reply(bool head) { head_only_ = head; }
  // True when nothing more arrives within `ms` (the connection stays open and silent).
  bool silent_for(int ms) {
    timeval tv{0, ms * 1000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char c;
    const auto n = ::recv(fd_, &c, 1, MSG_PEEK);
    timeval back{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &back, sizeof back);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
  // True when the server has closed the connection (reads EOF).
  bool closed_by_server() {
    char c;
    return ::recv(fd_, &c, 1, 0) == 0;
  }

 private:
  bool fill() {
    char tmp[65536];
    auto n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<std::size_t>(n));
    return true;
  }
  int fd_ = -1;
  std::string buf_;
  bool head_only_ = false;
};

struct Releases {
  fs::path a, b;
  std::string md5_a, md5_b;
};

// Release A: "acme" (text, labels a*), "globex" (numeric, integer labels). Release B: "acme" (labels b*).
inline const Releases& releases() {
  static Releases r = [] {
    Releases x;
    auto root = temp_dir("releases");
    x.a = root / "a";
    x.b = root / "b";
    x.md5_a = write_release(x.a, {{"acme", {3, text_adapter("a", 1)}}, {"globex", {1, numeric_adapter({"0", "7"})}}});
    x.md5_b = write_release(x.b, {{"acme", {4, text_adapter("b", 2)}}});
    return x;
  }();
  return r;
}

inline mlops::ServerOptions options() {
  mlops::ServerOptions o;
  o.port = 0;
  o.threads = 2;
  o.workers = 2;
  o.admin_token = "s3cret-token";
  o.max_body_bytes = 4096;
  o.max_header_bytes = 2048;
  o.max_rows = 50;
  o.max_connections = 8;
  o.read_timeout = std::chrono::milliseconds(400);
  return o;
}

inline nlohmann::json texts(std::initializer_list<const char*> t) {
  nlohmann::json j = nlohmann::json::array();
  for (auto* s : t) j.push_back(s);
  return nlohmann::json{{"instances", j}};
}

// The value of the Prometheus sample `series` (name and labels, as written) in `text`; -1 when absent.
inline double sample(const std::string& text, const std::string& series) {
  const auto at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

// Waits (up to 10 s) until the server's own metrics show `series` at `value`; true when they did.
inline bool wait_for_sample(const mlops::Server& server, const std::string& series, double value) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (sample(server.metrics_text(), series) != value) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

}  // namespace serve_test
