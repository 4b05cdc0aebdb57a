#include "mlops/pipeline.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <fstream>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "core/fs.hpp"
#include "core/hash.hpp"
#include "core/text.hpp"
#include "mlops/dolt.hpp"
#include "mlops/error.hpp"
#include "mlops/mlflow.hpp"
#include "mlops/trainer.hpp"

namespace mlops {

using nlohmann::json;

namespace {

constexpr const char* kTagFingerprint = "mlops.fingerprint";
constexpr const char* kTagDataCommit = "mlops.data.commit";
constexpr const char* kTagCodeCommit = "mlops.code.commit";
constexpr const char* kTagParams = "mlops.params";
constexpr const char* kTagSlice = "mlops.slice";
constexpr const char* kTagRows = "mlops.rows";
constexpr const char* kTagAdapter = "mlops.adapter";
constexpr const char* kTagReleaseMd5 = "mlops.release.md5";
constexpr const char* kTagReleaseImage = "mlops.release.image";
constexpr const char* kTagReleasePrevious = "mlops.release.previous";
constexpr const char* kTagReleaseState = "mlops.release.state";
constexpr const char* kManifestArtifact = "manifest.json";

// Calls fn(0), ..., fn(n - 1) on up to `threads` threads (the caller's among them). Once fn returns
// false no further index is handed out; calls already under way finish.
template <class Fn>
void parallel_for(std::size_t n, unsigned threads, Fn fn) {
  std::atomic<std::size_t> next{0};
  std::atomic<bool> stop{false};
  auto worker = [&] {
    for (std::size_t k = 0; !stop && (k = next++) < n;)
      if (!fn(k)) stop = true;
  };
  const std::size_t extra = std::min<std::size_t>(std::max(threads, 1U), std::max<std::size_t>(n, 1)) - 1;
  std::vector<std::thread> pool;
  for (std::size_t i = 0; i < extra; ++i) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
}

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

DatasetSpec dataset_spec(const CatalogEntry& e, const std::string& commit) {
  DatasetSpec s;
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

std::string run_tag(const json& run, const std::string& key) {
  for (const auto& t : run["data"].value("tags", json::array()))
    if (t.value("key", "") == key) return t.value("value", "");
  return {};
}

// Every model version of the catalog's adapters, by model name, with their aliases. MLflow's version
// search leaves aliases out; its registered-model search has them, so two paged searches cover all.
std::map<std::string, std::vector<ModelVersion>> version_index(MlflowTracker& tracker, const Catalog& catalog) {
  std::map<std::string, std::vector<ModelVersion>> index;
  for (const auto& e : catalog.entries()) index[e.name];
  std::map<std::pair<std::string, std::int64_t>, std::vector<std::string>> aliases;
  for (const auto& model : tracker.search_registered_models("", 1000)) {
    const std::string name = model.value("name", "");
    if (!index.count(name)) continue;
    for (const auto& a : model.value("aliases", json::array())) {
      const auto& v = a.at("version");
      const std::int64_t version = v.is_string() ? std::stoll(v.get<std::string>()) : v.get<std::int64_t>();
      aliases[{name, version}].push_back(a.value("alias", ""));
    }
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

}  // namespace

namespace {

// ---- Plan fast path -----------------------------------------------------------------------------------
// A plan over many adapters of one table must not diff or count the table once per adapter. When a
// slice filter is `column = ?` terms joined by AND (the common "one adapter per customer" shape), the
// pipeline diffs the table once per trained commit and evaluates each slice on the changed rows, and
// counts all slices with one GROUP BY. Any other filter, or a value it cannot compare exactly, takes the
// SQL path of DoltSource::diff / count, which gives the same answer.

// The columns of a filter made only of `column = ?` terms joined by AND; nothing for any other filter.
std::optional<std::vector<std::string>> simple_equalities(const std::string& where, std::size_t n_params) {
  if (where.empty())
    return n_params == 0 ? std::optional<std::vector<std::string>>(std::vector<std::string>{}) : std::nullopt;
  static const std::regex kAnd(R"(\s+AND\s+)", std::regex::icase);
  static const std::regex kTerm(R"re(^\s*\(?\s*"?([A-Za-z_][A-Za-z0-9_]*)"?\s*=\s*\?\s*\)?\s*$)re");
  std::vector<std::string> columns;
  for (std::sregex_token_iterator it(where.begin(), where.end(), kAnd, -1), end; it != end; ++it) {
    std::smatch m;
    const std::string term = *it;
    if (!std::regex_match(term, m, kTerm)) return std::nullopt;
    columns.push_back(m[1]);
  }
  if (columns.size() != n_params) return std::nullopt;
  return columns;
}

// 1: the cell equals the value as SQL's `=` says; 0: it does not; -1: types the pipeline does not compare.
int cell_equals(const Column& c, std::size_t row, const json& value) {
  if (c.null[row] || value.is_null()) return 0;
  switch (c.type) {
    case ColumnType::Int64:
      if (value.is_number_integer()) return c.ints[row] == value.get<std::int64_t>();
      if (value.is_boolean()) return c.ints[row] == (value.get<bool>() ? 1 : 0);
      return -1;
    case ColumnType::Float64:
      return value.is_number() ? c.reals[row] == value.get<double>() : -1;
    case ColumnType::Text:
      return value.is_string() ? c.strings[row] == value.get<std::string>() : -1;
    default:
      return -1;
  }
}

struct SliceChange {
  std::int64_t added = 0, modified = 0, removed = 0;
};

// The change of one slice within an unfiltered table diff, counted as DoltSource::diff with the filter
// counts it: both images in the slice → modified, only the new one → added, only the old one → removed.
// Nothing when a value cannot be compared exactly.
std::optional<SliceChange> slice_change(const Diff& full, const std::vector<std::string>& columns, const json& params) {
  const Table& t = full.rows;
  std::vector<const Column*> from, to;
  const Column* type = nullptr;
  try {
    type = &t.column("diff_type");
    for (const auto& c : columns) {
      from.push_back(&t.column("from_" + c));
      to.push_back(&t.column("to_" + c));
    }
  } catch (const Error&) {
    return std::nullopt;
  }
  SliceChange out;
  for (std::size_t r = 0; r < t.rows(); ++r) {
    const std::string& kind = type->strings[r];
    bool in_from = kind != "added", in_to = kind != "removed";
    for (std::size_t i = 0; i < columns.size(); ++i) {
      if (in_from) {
        const int eq = cell_equals(*from[i], r, params[i]);
        if (eq < 0) return std::nullopt;
        in_from = eq == 1;
      }
      if (in_to) {
        const int eq = cell_equals(*to[i], r, params[i]);
        if (eq < 0) return std::nullopt;
        in_to = eq == 1;
      }
    }
    if (in_from && in_to) ++out.modified;
    else if (in_to) ++out.added;
    else if (in_from) ++out.removed;
  }
  return out;
}

// Typed keys of cells and of filter values, to match GROUP BY rows to slices.
void append_key(std::string& key, const Column& c, std::size_t row) {
  if (c.null[row]) key += "n;";
  else if (c.type == ColumnType::Int64) key += "i" + std::to_string(c.ints[row]) + ";";
  else if (c.type == ColumnType::Float64) key += "d" + json(c.reals[row]).dump() + ";";
  else key += "s" + std::to_string(c.strings[row].size()) + ":" + c.strings[row] + ";";
}

std::optional<std::string> value_key(const json& v, ColumnType type) {
  if (type == ColumnType::Int64 && v.is_number_integer()) return "i" + std::to_string(v.get<std::int64_t>()) + ";";
  if (type == ColumnType::Float64 && v.is_number()) return "d" + json(v.get<double>()).dump() + ";";
  if (type == ColumnType::Text && v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    return "s" + std::to_string(s.size()) + ":" + s + ";";
  }
  return std::nullopt;
}

}  // namespace

Catalog load_catalog_table(DoltSource& source, const std::string& at, const std::string& table) {
  if (!is_sql_identifier(table)) throw ConfigError("catalog table " + detail::quote_for_message(table) + " is not a plain identifier");
  Table rows = source.query("SELECT name, config FROM " + table + " ORDER BY name", {}, at);
  const Column& names = rows.column("name");
  const Column& configs = rows.column("config");
  const std::string origin = "table '" + table + "' at " + at;
  json doc = {{"defaults", json::object()}, {"adapters", json::array()}};
  std::vector<std::string> problems;
  for (std::size_t i = 0; i < rows.rows(); ++i) {
    if (names.null[i] || names.type != ColumnType::Text) {
      problems.push_back("row " + std::to_string(i + 1) + ": column 'name' must be text");
      continue;
    }
    const std::string& name = names.strings[i];
    json config = json::object();
    if (!configs.null[i]) {
      if (configs.type != ColumnType::Text) {
        problems.push_back("adapter " + detail::quote_for_message(name) + ": column 'config' must be JSON text");
        continue;
      }
      try {
        config = json::parse(configs.strings[i]);
      } catch (const json::parse_error& e) {
        problems.push_back("adapter " + detail::quote_for_message(name) + ": column 'config' is not JSON (" + e.what() + ")");
        continue;
      }
    }
    if (!config.is_object()) {
      problems.push_back("adapter " + detail::quote_for_message(name) + ": column 'config' must hold a JSON object");
      continue;
    }
    if (name == "*") {
      doc["defaults"] = config;
    } else {
      config["name"] = name;
      doc["adapters"].push_back(config);
    }
  }
  if (!problems.empty()) {
    std::string msg = origin + " has " + std::to_string(problems.size()) + " problem(s):";
    for (const auto& p : problems) msg += "\n  - " + p;
    throw DataError(msg);
  }
  return Catalog::from_json_value(doc, origin);
}

// ---- JSON forms ----------------------------------------------------------------------------------------

json PlanItem::to_json() const {
  return {{"name", name},   {"stale", stale},       {"reasons", reasons}, {"production_version", production_version},
          {"trained_commit", trained_commit}, {"rows", rows}, {"added", added}, {"modified", modified},
          {"removed", removed}};
}

json Plan::to_json() const {
  json list = json::array();
  for (const auto& i : items) list.push_back(i.to_json());
  return {{"ref", ref}, {"commit", commit}, {"code_commit", code_commit}, {"items", list}};
}

Plan Plan::from_json(const json& j) {
  Plan p;
  try {
    p.ref = j.at("ref").get<std::string>();
    p.commit = j.at("commit").get<std::string>();
    p.code_commit = j.value("code_commit", "");
    for (const auto& i : j.at("items")) {
      PlanItem item;
      item.name = i.at("name").get<std::string>();
      item.stale = i.at("stale").get<bool>();
      item.reasons = i.value("reasons", std::vector<std::string>{});
      item.production_version = i.value("production_version", std::int64_t{0});
      item.trained_commit = i.value("trained_commit", "");
      item.rows = i.value("rows", std::int64_t{0});
      item.added = i.value("added", std::int64_t{0});
      item.modified = i.value("modified", std::int64_t{0});
      item.removed = i.value("removed", std::int64_t{0});
      p.items.push_back(std::move(item));
    }
  } catch (const json::exception& e) {
    throw DataError(std::string("not a plan document: ") + e.what());
  }
  return p;
}

std::vector<const PlanItem*> Plan::stale() const {
  std::vector<const PlanItem*> out;
  for (const auto& i : items)
    if (i.stale) out.push_back(&i);
  return out;
}

std::vector<const PlanItem*> Plan::shard(int index, int count) const {
  if (count < 1 || index < 0 || index >= count)
    throw ConfigError("shard " + std::to_string(index) + "/" + std::to_string(count) +
                      " is not valid: need 0 <= index < count");
  auto todo = stale();
  // Largest first onto the least-loaded shard; every tie broken by name, so all machines agree.
  std::sort(todo.begin(), todo.end(), [](const PlanItem* a, const PlanItem* b) {
    return a->rows != b->rows ? a->rows > b->rows : a->name < b->name;
  });
  std::vector<std::int64_t> load(static_cast<std::size_t>(count), 0);
  std::vector<const PlanItem*> mine;
  for (const PlanItem* item : todo) {
    auto target = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    load[static_cast<std::size_t>(target)] += std::max<std::int64_t>(item->rows, 1);
    if (target == index) mine.push_back(item);
  }
  std::sort(mine.begin(), mine.end(), [](const PlanItem* a, const PlanItem* b) { return a->name < b->name; });
  return mine;
}

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

json ReleaseReport::to_json() const {
  return {{"release", release.to_json()}, {"moved", moved}, {"pending", pending}, {"error", error},
          {"complete", complete()}};
}

// ---- Pipeline -----------------------------------------------------------------------------------------

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

Plan Pipeline::plan(const std::string& at) {
  Plan p;
  p.ref = at;
  p.commit = source_.resolve(at);
  p.code_commit = options_.code_commit;
  auto versions = version_index(tracker_, catalog_);
  std::map<std::pair<std::string, std::string>, std::optional<Diff>> table_diffs;  // (table, from) → diff
  for (const auto& e : catalog_.entries()) {
    PlanItem item;
    item.name = e.name;
    const ModelVersion* prod = with_alias(versions[e.name], options_.production_alias);
    if (prod == nullptr) {
      item.reasons.push_back(versions[e.name].empty() ? "never trained" : "never released");
    } else {
      item.production_version = prod->version;
      item.trained_commit = tag_of(*prod, kTagDataCommit);
      if (tag_of(*prod, kTagParams) != params_text(e)) item.reasons.push_back("hyperparameters changed");
      if (tag_of(*prod, kTagSlice) != slice_text(e)) item.reasons.push_back("data slice definition changed");
      const std::string trained_code = tag_of(*prod, kTagCodeCommit);
      if (options_.retrain_on_code_change && trained_code != p.code_commit)
        item.reasons.push_back("code changed (" + short_hash(trained_code) + " -> " + short_hash(p.code_commit) + ")");
      if (item.trained_commit.empty()) {
        item.reasons.push_back("data commit of version " + std::to_string(prod->version) + " unknown");
      } else if (item.trained_commit != p.commit) {
        std::optional<SliceChange> change;
        if (auto columns = simple_equalities(e.where, e.params.size())) {
          auto& full = table_diffs[{e.table, item.trained_commit}];
          if (!full) full = source_.diff(item.trained_commit, p.commit, e.table);
          change = slice_change(*full, *columns, e.params);
        }
        if (!change) {
          Diff d = source_.diff(item.trained_commit, p.commit, e.table, e.where, sql_params(e.params));
          change = SliceChange{d.added, d.modified, d.removed};
        }
        item.added = change->added;
        item.modified = change->modified;
        item.removed = change->removed;
        if (item.added + item.modified + item.removed > 0)
          item.reasons.push_back("data changed (+" + std::to_string(item.added) + " ~" + std::to_string(item.modified) +
                                 " -" + std::to_string(item.removed) + " rows)");
      }
    }
    item.stale = !item.reasons.empty();
    p.items.push_back(std::move(item));
  }
  count_stale_rows(p);
  return p;
}

void Pipeline::count_stale_rows(Plan& p) {
  // Stale slices of the same table filtered on the same columns are counted by one GROUP BY.
  std::map<std::pair<std::string, std::vector<std::string>>, std::vector<PlanItem*>> groups;
  std::vector<PlanItem*> others;
  for (auto& item : p.items) {
    if (!item.stale) continue;
    const CatalogEntry& e = catalog_.at(item.name);
    auto columns = simple_equalities(e.where, e.params.size());
    if (columns && !columns->empty()) groups[{e.table, *columns}].push_back(&item);
    else others.push_back(&item);
  }
  for (auto& [group, items] : groups) {
    const auto& [table, columns] = group;
    if (items.size() < 2) {
      others.insert(others.end(), items.begin(), items.end());
      continue;
    }
    std::string list;
    for (const auto& c : columns) list += (list.empty() ? "" : ", ") + c;
    Table counts;
    try {
      counts = source_.query("SELECT " + list + ", COUNT(*) AS n FROM " + table + " GROUP BY " + list, {}, p.commit);
    } catch (const DataSourceError&) {
      others.insert(others.end(), items.begin(), items.end());  // e.g. a column named like a keyword
      continue;
    }
    std::map<std::string, std::int64_t> by_key;
    const Column& n = counts.columns().back();
    for (std::size_t r = 0; r < counts.rows(); ++r) {
      std::string key;
      for (std::size_t i = 0; i < columns.size(); ++i) append_key(key, counts.columns()[i], r);
      by_key[key] = n.type == ColumnType::Int64 ? n.ints[r] : static_cast<std::int64_t>(n.reals[r]);
    }
    for (PlanItem* item : items) {
      const CatalogEntry& e = catalog_.at(item->name);
      std::string key;
      bool exact = true;
      for (std::size_t i = 0; i < columns.size() && exact; ++i) {
        auto k = value_key(e.params[i], counts.columns()[i].type);
        if (k) key += *k;
        else exact = false;
      }
      if (!exact) {
        others.push_back(item);  // a NULL value, or a type the keys do not compare: count it in SQL
        continue;
      }
      auto it = by_key.find(key);
      item->rows = it == by_key.end() ? 0 : it->second;
    }
  }
  for (PlanItem* item : others) {
    const CatalogEntry& e = catalog_.at(item->name);
    item->rows = source_.count(e.table, e.where, sql_params(e.params), p.commit);
  }
}

// An earlier train() of these adapters that was killed while recording left its run RUNNING. A run
// that got a registered version is complete (everything is sent before registration): it is ended
// FINISHED and its version reused. Any other never got a version: it is ended KILLED and the adapter is
// trained again.
void Pipeline::settle_interrupted_runs(const std::map<std::string, std::string>& fingerprints,
                                       const std::map<std::string, std::vector<ModelVersion>>& versions,
                                       TrainReport& report) {
  std::map<std::string, std::string> name_of;  // fingerprint -> adapter
  for (const auto& [name, fp] : fingerprints) name_of[fp] = name;
  const std::string exp = tracker_.experiment_id(options_.experiment);
  for (const auto& run : tracker_.search_runs({exp}, "attributes.status = 'RUNNING'", 1000)) {
    auto it = name_of.find(run_tag(run, kTagFingerprint));
    if (it == name_of.end()) continue;
    const std::string id = run.at("info").at("run_id").get<std::string>();
    bool registered = false;
    if (auto v = versions.find(it->second); v != versions.end())
      for (const auto& mv : v->second) registered = registered || (mv.run_id == id && mv.status == "READY");
    tracker_.call("POST", "mlflow/runs/update",
                  {{"run_id", id}, {"status", registered ? "FINISHED" : "KILLED"}, {"end_time", now_ms()}});
    if (!registered) report.abandoned_runs.push_back(id);
  }
}

TrainReport Pipeline::train(const Plan& plan, int shard_index, int shard_count, const TrainProgress& progress) {
  TrainReport report;
  report.commit = plan.commit;
  report.shard_index = shard_index;
  report.shard_count = shard_count;
  const auto mine = plan.shard(shard_index, shard_count);
  if (mine.empty()) return report;
  auto versions = version_index(tracker_, catalog_);
  const std::string code = plan.code_commit.empty() ? options_.code_commit : plan.code_commit;
  std::map<std::string, std::string> fingerprints;  // adapter -> fingerprint, for the whole shard
  for (const PlanItem* item : mine) fingerprints[item->name] = fingerprint(catalog_.at(item->name), plan.commit, code);
  settle_interrupted_runs(fingerprints, versions, report);

  using Clock = std::chrono::steady_clock;
  auto seconds_since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
  auto t0 = Clock::now();
  std::vector<AdapterSpec> specs;
  std::size_t looked_at = 0;
  for (const PlanItem* item : mine) {
    if (progress) progress("load", looked_at++, mine.size());
    const CatalogEntry& e = catalog_.at(item->name);
    TrainedItem out;
    out.name = e.name;
    const std::string& fp = fingerprints.at(e.name);
    const ModelVersion* existing = nullptr;
    for (const auto& v : versions[e.name])
      if (tag_of(v, kTagFingerprint) == fp && v.status == "READY") existing = &v;
    try {
      if (existing != nullptr) {
        tracker_.set_alias(e.name, options_.staging_alias, existing->version);
        out.status = "reused";
        out.version = existing->version;
        out.run_id = existing->run_id;
        report.items.push_back(std::move(out));
        continue;
      }
      Dataset ds = source_.dataset(dataset_spec(e, plan.commit));
      AdapterSpec spec = adapter_spec(e, std::move(ds), code);
      spec.validate();
      specs.push_back(std::move(spec));
    } catch (const Error& err) {
      out.status = "failed";
      out.error = err.what();
      report.items.push_back(std::move(out));
    }
  }

  if (progress) progress("load", mine.size(), mine.size());
  report.load_seconds = seconds_since(t0);
  t0 = Clock::now();
  std::vector<TrainedAdapter> trained;
  if (!specs.empty()) {
    ProgressCallback on_steps;
    if (progress) on_steps = [&](std::size_t done, std::size_t total) { progress("fit", done, total); };
    trained = trainer_.fit(specs, {}, on_steps);
  }
  report.fit_seconds = seconds_since(t0);
  t0 = Clock::now();

  // Recording is I/O against the tracking server: adapters are recorded by several threads at once.
  auto record = [&](std::size_t k) {
    const TrainedAdapter& t = trained[k];
    const AdapterSpec& spec = specs[k];
    const CatalogEntry& e = catalog_.at(t.name);
    TrainedItem out;
    out.name = t.name;
    std::optional<Run> run;
    bool registered = false;
    try {
      std::map<std::string, std::string> tags = {{kTagAdapter, t.name},
                                                 {kTagFingerprint, fingerprints.at(t.name)},
                                                 {kTagCodeCommit, code},
                                                 {"mlflow.source.git.commit", code},
                                                 {"mlops.device", t.device}};
      run = tracker_.start_run(options_.experiment, t.name, tags);
      out.run_id = run->id();
      // Params, every epoch's metrics and the lineage tags go to the server as one batch, and all of the
      // run is there before a version points at it; it ends FINISHED once the adapter is fully recorded.
      run->hold_logging();
      run->log_params(spec.params());
      for (const auto& m : t.history.epochs)
        run->log_metrics({{"loss", m.loss}, {"val_loss", m.val_loss}, {"val_accuracy", m.val_accuracy}}, m.epoch);
      run->log_dataset(spec.dataset);
      run->log_adapter(t, "model");
      run->flush();
      std::map<std::string, std::string> version_tags = {
          {kTagFingerprint, fingerprints.at(t.name)}, {kTagDataCommit, plan.commit},
          {kTagCodeCommit, code},                     {kTagParams, params_text(e)},
          {kTagSlice, slice_text(e)},                 {kTagRows, std::to_string(spec.dataset.rows())}};
      ModelVersion v = tracker_.register_model(t.name, *run, "model", version_tags);
      registered = true;
      tracker_.set_alias(t.name, options_.staging_alias, v.version);
      run->end(RunStatus::Finished);
      out.status = "trained";
      out.version = v.version;
      if (!t.history.epochs.empty()) out.val_accuracy = t.history.epochs.back().val_accuracy;
    } catch (const std::exception& err) {
      out.status = "failed";
      out.error = err.what();
      if (run && !run->ended()) {
        try {
          // A registered run is complete (a re-run reuses its version and sets the alias); any other failed.
          run->end(registered ? RunStatus::Finished : RunStatus::Failed);
        } catch (const std::exception&) {
          // The server is gone; the run stays RUNNING and the next train() of this shard settles it.
        }
      }
    }
    return out;
  };
  // Every trained adapter is recorded even when the progress callback fails; its error comes after.
  std::vector<TrainedItem> recorded(trained.size());
  std::mutex progress_mutex;
  std::size_t recorded_count = 0;
  std::exception_ptr progress_error;
  auto report_recorded = [&](std::size_t add) {
    std::lock_guard lock(progress_mutex);
    recorded_count += add;
    if (!progress || progress_error) return;
    try {
      progress("record", recorded_count, trained.size());
    } catch (...) {
      progress_error = std::current_exception();
    }
  };
  if (!trained.empty()) report_recorded(0);
  parallel_for(trained.size(), options_.record_threads, [&](std::size_t k) {
    recorded[k] = record(k);
    report_recorded(1);
    return true;
  });
  if (progress_error) std::rethrow_exception(progress_error);
  for (auto& item : recorded) report.items.push_back(std::move(item));
  report.record_seconds = seconds_since(t0);
  std::sort(report.items.begin(), report.items.end(),
            [](const TrainedItem& a, const TrainedItem& b) { return a.name < b.name; });
  return report;
}

// ---- Releases -----------------------------------------------------------------------------------------

namespace {

std::int64_t run_start_ms(const json& run) {
  const auto& t = run["info"].value("start_time", json(0));
  return t.is_string() ? std::stoll(t.get<std::string>()) : t.get<std::int64_t>();
}

// The release runs, newest first, as the tracker lists them: tags only, no manifest downloaded.
std::vector<json> release_runs(MlflowTracker& tracker, const std::string& experiment) {
  std::vector<json> runs;
  for (auto& run : tracker.search_runs({tracker.experiment_id(experiment)}, "", 1000))
    if (!run_tag(run, kTagReleaseMd5).empty()) runs.push_back(std::move(run));
  std::sort(runs.begin(), runs.end(), [](const json& a, const json& b) {
    const auto ta = run_start_ms(a), tb = run_start_ms(b);
    return ta != tb ? ta > tb : run_tag(a, kTagReleaseMd5) < run_tag(b, kTagReleaseMd5);
  });
  return runs;
}

ReleaseRecord record_from_run(MlflowTracker& tracker, const json& run) {
  ReleaseRecord r;
  r.md5 = run_tag(run, kTagReleaseMd5);
  r.image = run_tag(run, kTagReleaseImage);
  r.previous = run_tag(run, kTagReleasePrevious);
  r.state = run_tag(run, kTagReleaseState);
  r.run_id = run["info"].value("run_id", "");
  r.time_ms = run_start_ms(run);
  const auto tmp = std::filesystem::temp_directory_path() /
                   ("mlops-release-" + std::to_string(::getpid()) + "-" + r.run_id);
  std::filesystem::create_directories(tmp);
  try {
    const std::string root = run["info"].value("artifact_uri", "");
    auto local = tracker.download_artifacts(root + "/" + kManifestArtifact, tmp);
    auto file = std::filesystem::is_directory(local) ? local / kManifestArtifact : local;
    r.manifest = ReleaseManifest::load(file, r.md5);
  } catch (...) {
    std::filesystem::remove_all(tmp);
    throw;
  }
  std::filesystem::remove_all(tmp);
  return r;
}

std::string repository_of(const std::string& image) {
  auto colon = image.rfind(':');
  auto slash = image.rfind('/');
  if (colon == std::string::npos || (slash != std::string::npos && colon < slash)) return image;
  return image.substr(0, colon);
}

}  // namespace

std::vector<ReleaseRecord> Pipeline::releases() {
  std::vector<ReleaseRecord> out;
  for (const auto& run : release_runs(tracker_, options_.releases_experiment)) out.push_back(record_from_run(tracker_, run));
  return out;
}

ReleaseRecord Pipeline::get_release(const std::string& md5) {
  if (md5.size() < 6) throw ConfigError("release id '" + md5 + "' is too short: give at least 6 characters");
  const std::string exp = tracker_.experiment_id(options_.releases_experiment);
  std::vector<json> found;
  for (auto& run : tracker_.search_runs({exp}, "", 1000)) {
    const std::string m = run_tag(run, kTagReleaseMd5);
    if (!m.empty() && m.rfind(md5, 0) == 0) found.push_back(std::move(run));
  }
  if (found.empty()) throw NotFoundError("no release with MD5 " + detail::quote_for_message(md5));
  std::set<std::string> distinct;
  for (const auto& r : found) distinct.insert(run_tag(r, kTagReleaseMd5));
  if (distinct.size() > 1) throw ConfigError("release id '" + md5 + "' is ambiguous: give more characters");
  return record_from_run(tracker_, found.front());
}

ManifestDiff Pipeline::diff_releases(const std::string& from_md5, const std::string& to_md5) {
  return get_release(from_md5).manifest.diff(get_release(to_md5).manifest);
}

ReleaseManifest Pipeline::current_manifest() {
  auto versions = version_index(tracker_, catalog_);
  ReleaseManifest::Entries entries;
  for (const auto& e : catalog_.entries())
    if (const ModelVersion* v = with_alias(versions[e.name], options_.production_alias)) entries[e.name] = v->version;
  return ReleaseManifest(std::move(entries));
}

namespace {

// Finds the release run of `manifest`, or records a new one (state "recording"): a re-run after a
// failure finds the same run instead of adding another.
ReleaseRecord record_release(MlflowTracker& tracker, const std::string& experiment, const ReleaseManifest& manifest,
                             const std::string& image, const std::string& previous) {
  const std::string exp = tracker.experiment_id(experiment);
  for (const auto& run : tracker.search_runs({exp}, "", 1000))
    if (run_tag(run, kTagReleaseMd5) == manifest.md5()) return record_from_run(tracker, run);

  Run run = tracker.start_run(experiment, manifest.md5(),
                              {{kTagReleaseMd5, manifest.md5()},
                               {kTagReleaseImage, image},
                               {kTagReleasePrevious, previous},
                               {kTagReleaseState, "recording"},
                               {"mlops.release.models", std::to_string(manifest.size())}});
  const auto tmp = std::filesystem::temp_directory_path() / ("mlops-manifest-" + std::to_string(::getpid()));
  std::filesystem::create_directories(tmp);
  try {
    manifest.save(tmp / kManifestArtifact);
    run.log_artifact(tmp / kManifestArtifact);
    run.end(RunStatus::Finished);
  } catch (...) {
    std::filesystem::remove_all(tmp);
    throw;
  }
  std::filesystem::remove_all(tmp);
  ReleaseRecord r;
  r.md5 = manifest.md5();
  r.image = image;
  r.previous = previous;
  r.state = "recording";
  r.run_id = run.id();
  r.time_ms = now_ms();
  r.manifest = manifest;
  return r;
}

}  // namespace

namespace {

// Moves the production aliases to `target` (removing it from catalog models not in `target`), recording
// what moved and, after a failure, what is still pending. Marks the release complete when nothing is.
// With `staging` set (rollbacks), a staging alias pointing elsewhere is moved to the released version
// too, so the next release does not ship the withdrawn candidate again.
void apply_release(MlflowTracker& tracker, const Catalog& catalog, const std::string& alias,
                   std::map<std::string, std::vector<ModelVersion>>& versions, ReleaseReport& report,
                   unsigned threads, const std::string& staging = "") {
  const ReleaseManifest& target = report.release.manifest;
  std::vector<std::pair<std::string, std::int64_t>> todo;  // version 0: delete the alias
  std::vector<std::pair<std::string, std::int64_t>> staging_todo;
  for (const auto& e : catalog.entries()) {
    const ModelVersion* current = with_alias(versions[e.name], alias);
    const std::int64_t have = current ? current->version : 0;
    const std::int64_t want = target.contains(e.name) ? target.at(e.name) : 0;
    if (have != want) todo.emplace_back(e.name, want);
    if (!staging.empty() && want != 0) {
      const ModelVersion* staged = with_alias(versions[e.name], staging);
      if (staged != nullptr && staged->version != want) staging_todo.emplace_back(e.name, want);
    }
  }
  // After a failure no further alias is moved; those already under way finish and count as moved.
  std::vector<char> moved(todo.size(), 0);
  std::string failure;
  std::mutex error_mutex;
  parallel_for(todo.size(), threads, [&](std::size_t i) {
    const auto& [name, version] = todo[i];
    try {
      if (version == 0) tracker.delete_alias(name, alias);
      else tracker.set_alias(name, alias, version);
      moved[i] = 1;
      return true;
    } catch (const std::exception& err) {  // on a worker thread: nothing may escape
      std::lock_guard lock(error_mutex);
      if (failure.empty()) failure = err.what();
      return false;
    }
  });
  for (std::size_t i = 0; i < todo.size(); ++i) (moved[i] ? report.moved : report.pending).push_back(todo[i].first);
  if (!failure.empty()) {
    report.error = failure;
    return;
  }
  try {
    for (const auto& [name, version] : staging_todo) tracker.set_alias(name, staging, version);
    tracker.call("POST", "mlflow/runs/set-tag",
                 {{"run_id", report.release.run_id}, {"key", kTagReleaseState}, {"value", "complete"}});
    report.release.state = "complete";
  } catch (const Error& err) {
    report.error = err.what();
  }
}

}  // namespace

ReleaseReport Pipeline::release(const std::string& image_repository, const std::string& alias) {
  validate_docker_repository(image_repository);
  const std::string target = alias.empty() ? options_.production_alias : alias;
  if (target == options_.staging_alias)
    throw ConfigError("cannot release to the staging alias '" + target + "': staging is what gets released");
  auto versions = version_index(tracker_, catalog_);
  ReleaseManifest::Entries entries;
  for (const auto& e : catalog_.entries()) {
    const ModelVersion* v = with_alias(versions[e.name], options_.staging_alias);
    if (v == nullptr) v = with_alias(versions[e.name], target);
    if (v != nullptr) entries[e.name] = v->version;
  }
  if (entries.empty())
    throw NotFoundError("nothing to release: no adapter of the catalog has a '" + options_.staging_alias +
                        "' or '" + target + "' version");
  ReleaseManifest manifest(std::move(entries));
  std::string previous;
  for (const auto& run : release_runs(tracker_, options_.releases_experiment))
    if (run_tag(run, kTagReleaseMd5) != manifest.md5() && run_tag(run, kTagReleaseState) == "complete") {
      previous = run_tag(run, kTagReleaseMd5);
      break;
    }
  ReleaseReport report;
  report.release = record_release(tracker_, options_.releases_experiment, manifest,
                                  manifest.image_tag(image_repository), previous);
  apply_release(tracker_, catalog_, target, versions, report, options_.record_threads);
  return report;
}

ReleaseReport Pipeline::rollback_release(const std::string& md5) {
  ReleaseReport report;
  report.release = get_release(md5);
  auto versions = version_index(tracker_, catalog_);
  apply_release(tracker_, catalog_, options_.production_alias, versions, report, options_.record_threads,
                options_.staging_alias);
  return report;
}

ReleaseReport Pipeline::rollback_model(const std::string& name, std::int64_t version) {
  (void)catalog_.at(name);
  (void)tracker_.get_model_version(name, version);  // NotFoundError when it does not exist
  const auto runs = release_runs(tracker_, options_.releases_experiment);
  if (runs.empty()) throw NotFoundError("no release recorded yet: release before rolling a model back");
  ReleaseManifest manifest = current_manifest().with_version(name, version);
  ReleaseReport report;
  report.release = record_release(tracker_, options_.releases_experiment, manifest,
                                  manifest.image_tag(repository_of(run_tag(runs.front(), kTagReleaseImage))),
                                  run_tag(runs.front(), kTagReleaseMd5));
  auto versions = version_index(tracker_, catalog_);
  apply_release(tracker_, catalog_, options_.production_alias, versions, report, options_.record_threads,
                options_.staging_alias);
  return report;
}

json Pipeline::lineage(const std::string& name, const std::string& version_or_alias) {
  std::int64_t version = 0;
  const bool numeric = !version_or_alias.empty() &&
                       std::all_of(version_or_alias.begin(), version_or_alias.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (numeric) version = std::stoll(version_or_alias);
  else version = tracker_.get_by_alias(name, version_or_alias).version;
  json j = tracker_.lineage(name, version);
  j["name"] = name;
  j["version"] = version;
  return j;
}

std::string Pipeline::write_build_context(const std::filesystem::path& dir, const std::string& md5) {
  ReleaseRecord rec;
  if (md5.empty()) {
    const auto runs = release_runs(tracker_, options_.releases_experiment);
    if (runs.empty()) throw NotFoundError("no release recorded yet");
    rec = record_from_run(tracker_, runs.front());
  } else {
    rec = get_release(md5);
  }
  std::filesystem::create_directories(dir / "models");
  detail::write_file_atomically(dir / kManifestArtifact, rec.manifest.to_json());
  json summary = json::object();
  std::set<std::string> requirements;
  for (const auto& [name, version] : rec.manifest.entries()) {
    ModelVersion v = tracker_.get_model_version(name, version);
    const auto dest = dir / "models" / name;
    std::filesystem::remove_all(dest);
    std::filesystem::create_directories(dest);
    auto local = tracker_.download_artifacts(v.source, dest);
    (void)local;
    summary[name] = {{"version", version},
                     {"data_commit", tag_of(v, kTagDataCommit)},
                     {"code_commit", tag_of(v, kTagCodeCommit)},
                     {"run_id", v.run_id}};
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dest)) {
      if (entry.path().filename() != "requirements.txt") continue;
      std::ifstream in(entry.path());
      for (std::string line; std::getline(in, line);)
        if (!line.empty() && line[0] != '#') requirements.insert(line);
    }
  }
  detail::write_file_atomically(dir / "lineage.json", summary.dump(2));
  std::string reqs;
  for (const auto& r : requirements) reqs += r + "\n";
  detail::write_file_atomically(dir / "requirements.txt", reqs);

  auto label = [](const std::string& key, const std::string& value) {
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
  };
  std::ostringstream df;
  df << "# Release " << rec.md5 << ": " << rec.manifest.size() << " adapter models.\n"
     << "# Build: docker build -t " << rec.image << " .\n"
     << "FROM python:3.11-slim\n"
     << label("org.opencontainers.image.title", "mlops adapter release")
     << label("org.opencontainers.image.version", rec.md5)
     << label("org.opencontainers.image.ref.name", rec.image)
     << label("io.mlops.release.md5", rec.md5) << label("io.mlops.release.previous", rec.previous)
     << label("io.mlops.release.models", std::to_string(rec.manifest.size()));
  std::string code_commit;
  for (const auto& [name, info] : summary.items()) {
    df << label("io.mlops.model." + name, "v" + std::to_string(info["version"].get<std::int64_t>()) + " data=" +
                                              short_hash(info["data_commit"].get<std::string>()) + " code=" +
                                              short_hash(info["code_commit"].get<std::string>()));
    if (code_commit.empty()) code_commit = info["code_commit"].get<std::string>();
  }
  if (!code_commit.empty()) df << label("org.opencontainers.image.revision", code_commit);
  df << "WORKDIR /srv/release\n"
     << "COPY requirements.txt manifest.json lineage.json ./\n"
     << "RUN pip install --no-cache-dir -r requirements.txt\n"
     << "COPY models/ ./models/\n"
     << "ENV MLOPS_RELEASE_MD5=" << rec.md5 << " MLOPS_RELEASE_DIR=/srv/release\n";
  detail::write_file_atomically(dir / "Dockerfile", df.str());
  return rec.image;
}

}  // namespace mlops
