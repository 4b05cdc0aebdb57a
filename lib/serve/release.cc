// Release::load: a build-context folder (manifest.json + models/<name>/) into memory, in parallel.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/parallel.hpp"
#include "core/text.hpp"
#include "mlops/error.hpp"
#include "mlops/manifest.hpp"
#include "mlops/serve.hpp"
#include "serve/model_dir.hpp"

namespace mlops {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The image tag a build context records: release.json's "image", else the Dockerfile's ref.name label.
std::string image_of(const fs::path& dir) {
  std::error_code ec;
  if (fs::is_regular_file(dir / "release.json", ec)) {
    try {
      auto j = json::parse(read_text(dir / "release.json"));
      if (j.is_object() && j.contains("image") && j["image"].is_string()) return j["image"].get<std::string>();
    } catch (const json::exception&) {
    }
  }
  if (fs::is_regular_file(dir / "Dockerfile", ec)) {
    const std::string key = "LABEL \"org.opencontainers.image.ref.name\"=\"";
    std::istringstream in(read_text(dir / "Dockerfile"));
    for (std::string line; std::getline(in, line);)
      if (line.rfind(key, 0) == 0 && line.size() > key.size() + 1) return line.substr(key.size(), line.size() - key.size() - 1);
  }
  return {};
}

}  // namespace

std::shared_ptr<const Release> Release::load(const fs::path& dir, unsigned threads) {
  const auto started = std::chrono::steady_clock::now();
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw NotFoundError("release folder " + detail::quote_for_message(dir.string(), 200) + " does not exist");
  if (!fs::is_regular_file(dir / "manifest.json", ec))
    throw NotFoundError("release folder " + detail::quote_for_message(dir.string(), 200) + " has no manifest.json");
  const auto manifest = ReleaseManifest::load(dir / "manifest.json");
  auto rel = std::make_shared<Release>();
  rel->dir_ = dir;
  rel->md5_ = manifest.md5();
  rel->image_ = image_of(dir);
  json lineage = json::object();
  if (fs::is_regular_file(dir / "lineage.json", ec)) {
    try {
      lineage = json::parse(read_text(dir / "lineage.json"));
    } catch (const json::exception& e) {
      throw IntegrityError("release folder " + detail::quote_for_message(dir.string(), 200) +
                           ": lineage.json is not JSON: " + e.what());
    }
  }
  for (const auto& [name, version] : manifest.entries()) {
    ServedModel m;
    m.name = name;
    m.version = version;
    rel->models_.push_back(std::move(m));
  }
  std::sort(rel->models_.begin(), rel->models_.end(), [](const auto& a, const auto& b) { return a.name < b.name; });

  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  threads = static_cast<unsigned>(std::min<std::size_t>(threads, std::max<std::size_t>(1, rel->models_.size())));
  detail::parallel_for(rel->models_.size(), threads, [&](std::size_t i) {
    auto& m = rel->models_[i];
    m.adapter = detail::load_model_dir(dir / "models" / m.name, m.name);
    if (lineage.is_object() && lineage.contains(m.name) && lineage[m.name].is_object()) {
      m.lineage = lineage[m.name];
      if (m.lineage.contains("version") && m.lineage["version"] != m.version)
        throw IntegrityError("release folder: lineage.json gives " + m.name + " version " +
                             m.lineage["version"].dump() + ", the manifest " + std::to_string(m.version));
    } else {
      // The adapter's own lineage, when it has one (an adapter made by hand may carry none).
      const auto& l = m.adapter.lineage();
      auto text = [&l](const char* key) {
        return l.is_object() && l.contains(key) && l[key].is_string() ? l[key].get<std::string>() : std::string();
      };
      m.lineage = {{"version", m.version}, {"data_commit", text("commit")}, {"code_commit", text("code_commit")}};
    }
  });
  rel->load_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return rel;
}

const ServedModel* Release::find(std::string_view name) const noexcept {
  auto it = std::lower_bound(models_.begin(), models_.end(), name,
                             [](const ServedModel& m, std::string_view n) { return m.name < n; });
  return it != models_.end() && it->name == name ? &*it : nullptr;
}

}  // namespace mlops
