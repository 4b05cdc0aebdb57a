// Pipeline::write_build_context: a release as a Docker build context. The Dockerfile's text is the
// template Dockerfile.in next to this file; this unit fills in the release's values and labels.
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/fs.hpp"
#include "core/hash.hpp"
#include "core/text.hpp"
#include "mlflow/model_dir.hpp"
#include "mlops/error.hpp"
#include "mlops/manifest.hpp"
#include "mlops/mlflow.hpp"
#include "mlops/pipeline.hpp"
#include "mlops/tags.hpp"
#include "pipeline/dockerfile_template.hpp"
#include "pipeline/internal.hpp"

namespace mlops {

using nlohmann::json;
using namespace pipeline;

namespace {

// One Dockerfile LABEL line, the value quoted and escaped.
std::string label(const std::string& key, const std::string& value) {
  std::string escaped;
  for (char c : value) {
    if (c == '"' || c == '\\') escaped.push_back('\\');
    if (c == '\n') {
      escaped += "\\n";
      continue;
    }
    escaped.push_back(c);
  }
  return "LABEL \"" + key + "\"=\"" + escaped + "\"\n";
}

// The template with every {{name}} replaced by its value, in one pass (a value is never read as a template).
std::string fill(const std::string& text, const std::map<std::string, std::string>& values) {
  std::string out;
  std::size_t at = 0;
  for (auto open = text.find("{{"); open != std::string::npos; open = text.find("{{", at)) {
    const auto close = text.find("}}", open);
    if (close == std::string::npos) break;
    out.append(text, at, open - at);
    out += values.at(text.substr(open + 2, close - open - 2));
    at = close + 2;
  }
  return out.append(text, at, std::string::npos);
}

// One wheel of the context: its file, the name and version pip pins, and its SHA-256.
struct Wheel {
  std::filesystem::path path;
  std::string name;
  std::string version;
  std::string python;  // the interpreter tag, e.g. cp311
  std::string sha256;
};

// Reads a wheel's file name, {name}-{version}(-{build})?-{python}-{abi}-{platform}.whl, and hashes the file.
// @throws ConfigError when the file is missing or its name is not a wheel's
Wheel read_wheel(const std::filesystem::path& path, const char* what) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw ConfigError(std::string(what) + " " + detail::quote_for_message(path.string(), 300) + " does not exist");
  const std::string file = path.filename().string();
  std::vector<std::string> parts;
  if (file.size() > 4 && file.ends_with(".whl")) {
    std::string_view stem(file.data(), file.size() - 4);
    for (std::size_t at = 0;;) {
      const auto dash = stem.find('-', at);
      parts.emplace_back(stem.substr(at, dash == std::string_view::npos ? std::string_view::npos : dash - at));
      if (dash == std::string_view::npos) break;
      at = dash + 1;
    }
  }
  if (parts.size() != 5 && parts.size() != 6)
    throw ConfigError(std::string(what) + " " + detail::quote_for_message(file, 300) +
                      " is not a wheel (name-version-python-abi-platform.whl)");
  Wheel w{path, parts[0], parts[1], parts[parts.size() - 3], {}};
  std::ifstream in(path, std::ios::binary);
  detail::Digest digest("SHA256");
  std::vector<char> buf(1 << 16);
  while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0)
    digest.update(buf.data(), static_cast<std::size_t>(in.gcount()));
  if (in.bad()) throw ConfigError(std::string("cannot read ") + what + " " + detail::quote_for_message(path.string(), 300));
  w.sha256 = digest.hex();
  return w;
}

// A distribution name compared the way pip compares them: lowercase, runs of -_. as one '-'.
std::string normalized(const std::string& name) {
  std::string out;
  for (char c : name) {
    const bool sep = c == '-' || c == '_' || c == '.';
    if (sep) {
      if (out.empty() || out.back() != '-') out.push_back('-');
    } else {
      out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
  }
  return out;
}

// python:<X.Y>-slim-bookworm for a CPython tag such as cp311.
std::string default_base_image(const Wheel& w) {
  const auto& t = w.python;
  if (t.size() < 4 || t.compare(0, 2, "cp") != 0 || !std::all_of(t.begin() + 2, t.end(), [](char c) { return c >= '0' && c <= '9'; }))
    throw ConfigError("the wheel " + detail::quote_for_message(w.path.filename().string(), 300) +
                      " is not for one CPython version: pass a base image");
  return "python:" + t.substr(2, 1) + "." + t.substr(3) + "-slim-bookworm";
}

// Copies the wheels into <dir>/wheels and writes the hash-pinned requirements file pip installs from.
void write_wheels(const std::filesystem::path& dir, const std::vector<Wheel>& wheels) {
  const auto dest = dir / "wheels";
  std::filesystem::remove_all(dest);
  std::filesystem::create_directories(dest);
  std::string requirements;
  for (const auto& w : wheels) {
    std::filesystem::copy_file(w.path, dest / w.path.filename(), std::filesystem::copy_options::overwrite_existing);
    requirements += normalized(w.name) + "==" + w.version + " --hash=sha256:" + w.sha256 + "\n";
  }
  detail::write_file_atomically(dest / "requirements.txt", requirements);
}

// The release's Dockerfile: OCI labels for the release and one label per model (version, data and
// code commit) from `summary`.
std::string dockerfile(const ReleaseRecord& rec, const json& summary, const std::string& base_image) {
  std::string labels = label("org.opencontainers.image.title", "mlops adapter release") +
                       label("org.opencontainers.image.version", rec.md5) +
                       label("org.opencontainers.image.ref.name", rec.image) + label("io.mlops.release.md5", rec.md5) +
                       label("io.mlops.release.previous", rec.previous) +
                       label("io.mlops.release.models", std::to_string(rec.manifest.size()));
  std::string code_commit;
  for (const auto& [name, info] : summary.items()) {
    labels += label("io.mlops.model." + name, "v" + std::to_string(info["version"].get<std::int64_t>()) + " data=" +
                                                  short_hash(info["data_commit"].get<std::string>()) + " code=" +
                                                  short_hash(info["code_commit"].get<std::string>()));
    if (code_commit.empty()) code_commit = info["code_commit"].get<std::string>();
  }
  if (!code_commit.empty()) labels += label("org.opencontainers.image.revision", code_commit);
  labels.pop_back();  // the template's line break ends the last label
  return fill(kDockerfileTemplate, {{"md5", rec.md5},
                                    {"models", std::to_string(rec.manifest.size())},
                                    {"image", rec.image},
                                    {"base_image", base_image},
                                    {"labels", labels}});
}

}  // namespace

std::string Pipeline::write_build_context(const std::filesystem::path& dir, const std::string& md5,
                                          const BuildContextOptions& options) {
  // Every wheel is read and hashed before anything is written.
  const bool image = !options.wheel.empty();
  std::vector<Wheel> wheels;
  if (image) {
    wheels.push_back(read_wheel(options.wheel, "the wheel"));
    if (normalized(wheels.front().name) != "mlops-dolt")
      throw ConfigError("the wheel " + detail::quote_for_message(options.wheel.filename().string(), 300) +
                        " is not this project's (mlops_dolt-<version>-<tags>.whl)");
  } else if (!options.dependency_wheels.empty()) {
    throw ConfigError("dependency wheels given without the wheel of this project");
  }
  std::set<std::string> names{"mlops-dolt"};
  for (const auto& p : options.dependency_wheels) {
    wheels.push_back(read_wheel(p, "the dependency wheel"));
    if (!names.insert(normalized(wheels.back().name)).second)
      throw ConfigError("two wheels of " + detail::quote_for_message(wheels.back().name, 100) + " given");
  }
  const std::string base_image =
      !image || !options.base_image.empty() ? options.base_image : default_base_image(wheels.front());

  ReleaseRecord rec;
  if (md5.empty()) {
    const auto runs = release_runs(tracker_, options_.releases_experiment);
    if (runs.empty()) throw NotFoundError("no release recorded yet");
    rec = record_from_run(tracker_, runs.front());
  } else {
    rec = get_release(md5);
  }
  std::error_code ec;
  std::filesystem::create_directories(dir / "models", ec);
  if (ec)
    throw ConfigError("cannot make the build context directory " + detail::quote_for_message((dir / "models").string(), 300) +
                      ": " + ec.message());
  // Names were checked where they entered; one from an older record must still stay inside models/.
  for (const auto& [name, version] : rec.manifest.entries())
    if (auto why = model_name_problem(name)) throw DataError("release " + rec.md5 + ": model " + detail::quote_for_message(name) + ": " + *why);
  detail::write_file_atomically(dir / tags::kManifestArtifact, rec.manifest.to_json());
  json summary = json::object();
  for (const auto& [name, version] : rec.manifest.entries()) {
    ModelVersion v = tracker_.get_model_version(name, version);
    const auto dest = dir / "models" / name;
    std::filesystem::remove_all(dest);
    std::filesystem::create_directories(dest);
    // Read back as the format says: a model directory that does not parse fails here, not in the image.
    (void)model_dir::read(tracker_.download_artifacts(v.source, dest));
    summary[name] = {{"version", version},
                     {"data_commit", tag_of(v, tags::kDataCommit)},
                     {"code_commit", tag_of(v, tags::kCodeCommit)},
                     {"run_id", v.run_id}};
  }
  detail::write_file_atomically(dir / "lineage.json", summary.dump(2));
  // What the release is called, for whoever serves the folder (`mlops serve` answers /version with it).
  detail::write_file_atomically(dir / "release.json",
                                json{{"md5", rec.md5}, {"image", rec.image}, {"previous", rec.previous}}.dump(2));
  if (!image) return rec.image;  // the release folder only
  write_wheels(dir, wheels);
  detail::write_file_atomically(dir / "Dockerfile", dockerfile(rec, summary, base_image));
  return rec.image;
}

}  // namespace mlops
