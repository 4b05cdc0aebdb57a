// Pipeline::plan: which adapters are stale at a data commit, and the plan's shards.
#include <algorithm>
#include <map>
#include <optional>
#include <regex>

#include "mlops/error.hpp"
#include "mlops/pipeline.hpp"
#include "mlops/tags.hpp"
#include "pipeline/internal.hpp"

namespace mlops {

using nlohmann::json;
using namespace pipeline;

namespace {

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

json PlanItem::to_json() const {
  return {{"name", name},   {"stale", stale},       {"reasons", reasons}, {"production_version", production_version},
          {"trained_commit", trained_commit}, {"rows", rows}, {"added", added}, {"modified", modified},
          {"removed", removed}, {"staging_version", staging_version}, {"awaiting_release", awaiting_release}};
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
      item.staging_version = i.value("staging_version", std::int64_t{0});
      item.awaiting_release = i.value("awaiting_release", false);
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

bool Pipeline::awaiting_release(PlanItem& item, const std::vector<ModelVersion>& versions,
                                const std::string& wanted_fingerprint) const {
  // Trained at this very commit, code and configuration (what train() would reuse) and staged, but newer
  // than production: nothing to train, only a release to make.
  const ModelVersion* staged = with_alias(versions, options_.staging_alias);
  if (staged == nullptr || staged->version <= item.production_version || staged->status != "READY" ||
      tag_of(*staged, tags::kFingerprint) != wanted_fingerprint)
    return false;
  item.staging_version = staged->version;
  item.awaiting_release = true;
  return true;
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
      item.trained_commit = tag_of(*prod, tags::kDataCommit);
      if (tag_of(*prod, tags::kParams) != params_text(e)) item.reasons.push_back("hyperparameters changed");
      if (tag_of(*prod, tags::kSlice) != slice_text(e)) item.reasons.push_back("data slice definition changed");
      const std::string trained_code = tag_of(*prod, tags::kCodeCommit);
      if (options_.retrain_on_code_change && trained_code != p.code_commit)
        item.reasons.push_back("code changed (" + short_hash(trained_code) + " -> " + short_hash(p.code_commit) + ")");
      if (item.trained_commit.empty()) {
        item.reasons.push_back("data commit of version " + std::to_string(prod->version) + " unknown");
      } else if (item.trained_commit != p.commit) {
        std::optional<SliceChange> change;
        try {
          if (auto columns = simple_equalities(e.where, e.params.size())) {
            auto& full = table_diffs[{e.table, item.trained_commit}];
            if (!full) full = source_.diff(item.trained_commit, p.commit, e.table);
            change = slice_change(*full, *columns, e.params);
          }
          if (!change) {
            Diff d = source_.diff(item.trained_commit, p.commit, e.table, e.where, sql_params(e.params));
            change = SliceChange{d.added, d.modified, d.removed};
          }
        } catch (const NotFoundError& err) {
          // The commit is gone (history rewritten, another database): nothing to compare with, so retrain.
          // A version recorded from another data URI says so: two sources sharing one MLflow server.
          const std::string from = tag_of(*prod, tags::kDataUri);
          if (!from.empty() && from != source_.uri())
            item.reasons.push_back("version " + std::to_string(prod->version) + " was trained on another data source, " +
                                   from + " (data commit " + short_hash(item.trained_commit) + " is not in " +
                                   source_.uri() + ")");
          else
            item.reasons.push_back("data commit " + short_hash(item.trained_commit) + " of version " +
                                   std::to_string(prod->version) + " is not in the database (" + std::string(err.detail()) + ")");
        }
        if (!change) {
          item.stale = !awaiting_release(item, versions[e.name], fingerprint(e, p.commit, p.code_commit));
          p.items.push_back(std::move(item));
          continue;
        }
        item.added = change->added;
        item.modified = change->modified;
        item.removed = change->removed;
        if (item.added + item.modified + item.removed > 0)
          item.reasons.push_back("data changed (+" + std::to_string(item.added) + " ~" + std::to_string(item.modified) +
                                 " -" + std::to_string(item.removed) + " rows)");
      }
    }
    item.stale = !item.reasons.empty() &&
                 !awaiting_release(item, versions[e.name], fingerprint(e, p.commit, p.code_commit));
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

}  // namespace mlops
