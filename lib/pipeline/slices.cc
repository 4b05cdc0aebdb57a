// Reading the datasets of many adapters: slices of the form `column = ?` of one table, read alike, come
// from one scan of that table (DoltSource::datasets); each is exactly its own single read.
#include <map>
#include <regex>
#include <string>
#include <tuple>
#include <vector>

#include "mlops/error.hpp"
#include "pipeline/internal.hpp"

namespace mlops::pipeline {

namespace {

// The column of a slice `column = ?` with one non-NULL value, as dataset() would be given it; else "".
std::string slice_column(const DatasetSpec& s) {
  static const std::regex one_column(R"(([A-Za-z_][A-Za-z0-9_$]*) = \?)");
  std::smatch m;
  if (s.params.size() != 1 || std::holds_alternative<std::nullptr_t>(s.params[0]) ||
      !std::regex_match(s.where, m, one_column))
    return {};
  return m[1].str();
}

}  // namespace

std::map<std::string, Dataset> read_slices(DoltSource& source, const std::vector<const CatalogEntry*>& entries,
                                           const std::string& commit, HoldoutSide side) {
  // Adapters grouped by what one scan can serve: table, label, features or text and featurizer, the
  // slice column and the held-out share. Several adapters may share one slice (different hyperparameters);
  // with rows held out each has its own (the hash is salted by its name), so the later ones read alone.
  using Key = std::tuple<std::string, std::string, std::vector<std::string>, std::string, int, std::uint64_t, bool,
                         std::string, int, double>;
  struct Group {
    DatasetSpec spec;
    std::string by;
    std::vector<SqlValue> values;
    std::vector<std::vector<std::string>> names;  // adapters of each value
  };
  std::map<Key, Group> groups;
  for (const CatalogEntry* e : entries) {
    DatasetSpec s = dataset_spec(*e, commit, side);
    const std::string by = slice_column(s);
    if (by.empty()) continue;
    Group& g = groups[Key{s.table, s.label, s.features, s.text, s.text_dimension, s.text_seed, s.drop_invalid, by,
                          static_cast<int>(s.holdout.side), s.holdout.fraction}];
    const SqlValue value = s.params[0];
    std::size_t i = 0;
    while (i < g.values.size() && !(g.values[i] == value)) ++i;
    if (i < g.values.size() && s.holdout.side != HoldoutSide::All) continue;
    if (i == g.values.size()) {
      g.values.push_back(value);
      g.names.emplace_back();
    }
    g.names[i].push_back(e->name);
    if (g.by.empty()) {
      s.where.clear();
      s.params.clear();
      g.spec = std::move(s);
      g.by = by;
    }
  }
  std::map<std::string, Dataset> out;
  for (auto& [key, g] : groups) {
    if (g.values.size() < 2) continue;  // one slice: its own read is the same scan
    std::vector<Dataset> read;
    try {
      std::vector<std::string> salts;
      if (g.spec.holdout.side != HoldoutSide::All)
        for (const auto& names : g.names) salts.push_back(names.front());
      read = source.datasets(g.spec, g.by, g.values, salts);
    } catch (const Error&) {
      continue;  // each adapter's own read then reports what is wrong with its slice
    }
    for (std::size_t i = 0; i < read.size(); ++i)
      for (std::size_t k = 0; k < g.names[i].size(); ++k)
        out.emplace(g.names[i][k], k + 1 < g.names[i].size() ? read[i] : std::move(read[i]));
  }
  return out;
}

}  // namespace mlops::pipeline
