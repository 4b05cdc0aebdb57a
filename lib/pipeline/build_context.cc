// Pipeline::write_build_context: a release as a Docker build context. The Dockerfile's text is the
// template Dockerfile.in next to this file; this unit fills in the release's values and labels.
#include <filesystem>
#include <map>
#include <set>
#include <string>

#include "core/fs.hpp"
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

// The release's Dockerfile: OCI labels for the release and one label per model (version, data and
// code commit) from `summary`.
std::string dockerfile(const ReleaseRecord& rec, const json& summary) {
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
                                    {"labels", labels}});
}

}  // namespace

std::string Pipeline::write_build_context(const std::filesystem::path& dir, const std::string& md5) {
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
  std::set<std::string> requirements;
  for (const auto& [name, version] : rec.manifest.entries()) {
    ModelVersion v = tracker_.get_model_version(name, version);
    const auto dest = dir / "models" / name;
    std::filesystem::remove_all(dest);
    std::filesystem::create_directories(dest);
    const model_dir::Contents model = model_dir::read(tracker_.download_artifacts(v.source, dest));
    requirements.insert(model.requirements.begin(), model.requirements.end());
    summary[name] = {{"version", version},
                     {"data_commit", tag_of(v, tags::kDataCommit)},
                     {"code_commit", tag_of(v, tags::kCodeCommit)},
                     {"run_id", v.run_id}};
  }
  detail::write_file_atomically(dir / "lineage.json", summary.dump(2));
  std::string reqs;
  for (const auto& r : requirements) reqs += r + "\n";
  detail::write_file_atomically(dir / model_dir::kRequirements, reqs);
  detail::write_file_atomically(dir / "Dockerfile", dockerfile(rec, summary));
  return rec.image;
}

}  // namespace mlops
