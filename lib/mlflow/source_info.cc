// The code version for run tags and lineage: GitHub Actions' environment or the git repository.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <optional>

#include "core/uri.hpp"
#include "mlops/mlflow.hpp"

namespace mlops {

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// Runs a program (no shell) and returns its standard output without the trailing newline, or nothing
// when it cannot run or exits with an error.
std::optional<std::string> run_capture(std::vector<std::string> argv) {
  std::vector<char*> args;  // built before fork: the child may only make async-signal-safe calls
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  int fds[2];
  if (::pipe(fds) != 0) return std::nullopt;
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return std::nullopt;
  }
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    const int devnull = ::open("/dev/null", O_WRONLY);
    if (devnull >= 0) ::dup2(devnull, STDERR_FILENO);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string out;
  std::array<char, 4096> buf;
  ssize_t n;
  while ((n = ::read(fds[0], buf.data(), buf.size())) > 0) out.append(buf.data(), static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

// The script a Python interpreter runs, or the executable.
std::string program_name() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> args;
  std::string arg;
  while (std::getline(in, arg, '\0')) args.push_back(arg);
  if (args.empty()) return "";
  const auto exe = std::filesystem::path(args[0]).filename().string();
  if (exe.rfind("python", 0) == 0) {
    for (std::size_t i = 1; i < args.size(); ++i) {
      if (args[i] == "-m" && i + 1 < args.size()) return args[i + 1];
      if (args[i] == "-c") return args[0];
      if (!args[i].empty() && args[i][0] != '-') {
        std::error_code ec;
        auto abs = std::filesystem::absolute(args[i], ec);
        return ec ? args[i] : abs.string();
      }
    }
  }
  return args[0];
}

}  // namespace

nlohmann::json SourceInfo::to_json() const {
  return {{"commit", commit},           {"branch", branch},          {"repo_url", repo_url},
          {"dirty", dirty},             {"source_name", source_name}, {"source_type", source_type}};
}

SourceInfo detect_source_info(const std::filesystem::path& directory) {
  SourceInfo info;
  info.source_name = program_name();
  info.source_type = "LOCAL";
  if (env("GITHUB_ACTIONS") == "true" && !env("GITHUB_SHA").empty()) {
    info.source_type = "JOB";
    info.commit = env("GITHUB_SHA");
    info.branch = env("GITHUB_REF_NAME");
    const std::string server = env("GITHUB_SERVER_URL");
    const std::string repo = env("GITHUB_REPOSITORY");
    if (!repo.empty()) info.repo_url = detail::redact_uri((server.empty() ? "https://github.com" : server) + "/" + repo);
    return info;
  }
  const std::string dir = directory.empty() ? "." : directory.string();
  auto commit = run_capture({"git", "-C", dir, "rev-parse", "HEAD"});
  if (!commit || commit->empty()) return info;
  info.commit = *commit;
  if (auto branch = run_capture({"git", "-C", dir, "rev-parse", "--abbrev-ref", "HEAD"}); branch && *branch != "HEAD")
    info.branch = *branch;
  if (auto url = run_capture({"git", "-C", dir, "config", "--get", "remote.origin.url"}))
    info.repo_url = detail::redact_uri(*url);
  if (auto status = run_capture({"git", "-C", dir, "status", "--porcelain", "--untracked-files=no"}))
    info.dirty = !status->empty();
  return info;
}

}  // namespace mlops
