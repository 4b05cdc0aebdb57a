// The pipeline's shared pieces: construction, catalog entries as reader and trainer inputs, the texts
// that decide staleness, the model-version index and the JSON forms of the reports.
#include "mlops/pipeline.hpp"

#include <algorithm>
#include <chrono>

#include "core/hash.hpp"
#include "mlops/error.hpp"
#include "mlops/tags.hpp"
#include "pipeline/internal.hpp"

namespace mlops {

using nlohmann::json;

namespace pipeline {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::vector<SqlValue> sql_params(const json& params) {
  std::vector<SqlValue> out;
  for (const auto& p : params) {
    if (p.is_null()) out.emplace_back(nullptr);
    else if (p.is_boolean()) out.emplace_back(std::int64_t{p.get<bool>() ? 1 : 0});
    else if (p.is_number_integer()) out.emplace_back(p.get<std::int64_t>());
    else if (p.is_number()) out.emplace_back(p.get<double>());
    else if (p.is_string()) out.emplace_back(p.get<std::string>());
    else throw DataError("parameter " + p.dump() + " is not a string, number, boolean or null");
  }
  return out;
}

DatasetSpec dataset_spec(const CatalogEntry& e, const std::string& commit, HoldoutSide side) {
  DatasetSpec s;
  if (e.gate.eval_fraction > 0) s.holdout = Holdout{side, e.name, e.gate.eval_fraction};
  s.table = e.table;
  s.label = e.label;
  s.features = e.features;
  s.text = e.text;
  s.where = e.where;
  s.params = sql_params(e.params);
  s.at = commit;
  s.text_dimension = static_cast<int>(e.featurizer.dimension);
  s.text_seed = static_cast<std::uint64_t>(e.featurizer.seed);
  return s;
}

AdapterSpec adapter_spec(const CatalogEntry& e, Dataset dataset, const std::string& code_commit) {
  AdapterSpec s;
  static_cast<Hyperparameters&>(s) = e.hyperparameters;
  s.name = e.name;
  s.dataset = std::move(dataset);
  s.code_commit = code_commit;
  return s;
}

// The hyperparameters exactly as recorded: the trainer's own params() of the spec this entry makes.
std::string params_text(const CatalogEntry& e) {
  json j = json::object();
  for (const auto& [k, v] : adapter_spec(e, Dataset(), "").params()) j[k] = v;
  return j.dump();
}

// What selects and shapes the rows: a change here changes the data the adapter learns from.
std::string slice_text(const CatalogEntry& e) {
  json j = {{"table", e.table}, {"label", e.label}, {"features", e.features}, {"text", e.text},
            {"where", e.where}, {"params", e.params}};
  if (!e.text.empty()) j["featurizer"] = e.featurizer.to_json();
  // The evaluation rows are left out of training: another share trains on other rows.
  if (e.gate.eval_fraction > 0) j["eval_fraction"] = e.gate.eval_fraction;
  return j.dump();
}

std::string fingerprint(const CatalogEntry& e, const std::string& data_commit, const std::string& code_commit) {
  json j = {{"adapter", e.name},       {"data_commit", data_commit}, {"code_commit", code_commit},
            {"params", params_text(e)}, {"slice", slice_text(e)}};
  return detail::sha256_hex(j.dump());
}

std::string tag_of(const ModelVersion& v, const char* key) {
  auto it = v.tags.find(key);
  return it == v.tags.end() ? std::string() : it->second;
}

// Every model version of the catalog's adapters, by model name, with their aliases. MLflow's version
// search leaves aliases out; its registered-model search has them, so two paged searches cover all.
VersionIndex version_index(MlflowTracker& tracker, const Catalog& catalog) {
  VersionIndex index;
  for (const auto& e : catalog.entries()) index[e.name];
  std::map<std::pair<std::string, std::int64_t>, std::vector<std::string>> aliases;
  for (const auto& model : tracker.search_registered_models("", 1000)) {
    if (!index.count(model.name)) continue;
    for (const auto& [alias, version] : model.aliases) aliases[{model.name, version}].push_back(alias);
  }
  for (auto& v : tracker.search_model_versions("", 1000)) {
    auto it = index.find(v.name);
    if (it == index.end()) continue;
    v.aliases = aliases[{v.name, v.version}];
    it->second.push_back(std::move(v));
  }
  return index;
}

const ModelVersion* with_alias(const std::vector<ModelVersion>& versions, const std::string& alias) {
  for (const auto& v : versions)
    if (std::find(v.aliases.begin(), v.aliases.end(), alias) != v.aliases.end()) return &v;
  return nullptr;
}

std::string short_hash(const std::string& h) { return h.substr(0, 12); }

}  // namespace pipeline

json TrainedItem::to_json() const {
  return {{"name", name}, {"status", status}, {"version", version}, {"run_id", run_id}, {"error", error},
          {"val_accuracy", val_accuracy}};
}

std::size_t TrainReport::failed() const {
  return static_cast<std::size_t>(
      std::count_if(items.begin(), items.end(), [](const TrainedItem& i) { return i.status == "failed"; }));
}

json TrainReport::to_json() const {
  json list = json::array();
  for (const auto& i : items) list.push_back(i.to_json());
  return {{"commit", commit},
          {"shard", std::to_string(shard_index) + "/" + std::to_string(shard_count)},
          {"items", list},
          {"failed", failed()},
          {"abandoned_runs", abandoned_runs},
          {"seconds", {{"load", load_seconds}, {"fit", fit_seconds}, {"record", record_seconds}}}};
}

json ReleaseRecord::to_json() const {
  return {{"md5", md5},     {"image", image},   {"previous", previous},
          {"state", state}, {"run_id", run_id}, {"time_ms", time_ms},
          {"manifest", json::parse(manifest.to_json())}};
}

json HeldBack::to_json() const {
  return {{"name", name}, {"candidate_version", candidate_version}, {"kept_version", kept_version},
          {"verdict", verdict}, {"reasons", reasons}};
}

json ReleaseReport::to_json() const {
  json held = json::array(), warn = json::array();
  for (const auto& h : held_back) held.push_back(h.to_json());
  for (const auto& h : warned) warn.push_back(h.to_json());
  return {{"release", release.to_json()}, {"moved", moved},     {"pending", pending},
          {"error", error},               {"complete", complete()}, {"gate", gate},
          {"promoted", promoted},         {"held_back", held},  {"warned", warn}};
}

GateMode parse_gate_mode(const std::string& text) {
  if (text == "enforce") return GateMode::Enforce;
  if (text == "warn") return GateMode::Warn;
  if (text == "off") return GateMode::Off;
  throw ConfigError("gate mode '" + text + "' is not one of enforce, warn, off");
}

const char* gate_mode_name(GateMode mode) noexcept {
  switch (mode) {
    case GateMode::Enforce: return "enforce";
    case GateMode::Warn: return "warn";
    case GateMode::Off: return "off";
  }
  return "off";
}

Pipeline::Pipeline(DoltSource& source, MlflowTracker& tracker, CudaTrainer& trainer, Catalog catalog,
                   PipelineOptions options)
    : source_(source), tracker_(tracker), trainer_(trainer), catalog_(std::move(catalog)), options_(std::move(options)) {
  if (options_.code_commit.empty()) {
    options_.code_commit = detect_source_info().commit;
    if (options_.code_commit.empty()) options_.code_commit = "unknown";
  }
  if (options_.staging_alias == options_.production_alias)
    throw ConfigError("the staging and production aliases must differ, both are '" + options_.staging_alias + "'");
}

}  // namespace mlops
