#include "mlops/catalog.hpp"

#include <algorithm>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "core/text.hpp"
#include "mlops/error.hpp"
#include "mlops/manifest.hpp"

namespace mlops {

using nlohmann::json;

bool is_sql_identifier(std::string_view name) noexcept {
  if (name.empty() || name.size() > 64) return false;
  auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  if (!alpha(name[0])) return false;
  for (char c : name)
    if (!alpha(c) && !(c >= '0' && c <= '9')) return false;
  return true;
}

json FeaturizerSettings::to_json() const { return {{"dimension", dimension}, {"seed", seed}}; }

json GateSettings::to_json() const {
  return {{"eval_fraction", eval_fraction}, {"min_accuracy", min_accuracy}, {"max_drop", max_drop},
          {"min_eval_rows", min_eval_rows}, {"confidence", confidence}, {"eval_ref", eval_ref}};
}

json CatalogEntry::to_json() const {
  json j = hyperparameters.to_json();
  j.update(gate.to_json());
  j["name"] = name;
  j["table"] = table;
  j["label"] = label;
  if (text.empty()) j["features"] = features;
  else {
    j["text"] = text;
    j["featurizer"] = featurizer.to_json();
  }
  j["where"] = where;
  j["params"] = params;
  return j;
}

namespace {

// Reads one entry's fields, recording each problem instead of stopping at the first.
class EntryReader {
 public:
  // `prefix` names a nested table in messages ("featurizer.").
  EntryReader(const json& fields, std::string who, std::vector<std::string>& problems, std::string prefix = "")
      : fields_(fields), who_(std::move(who)), problems_(problems), prefix_(std::move(prefix)) {}

  void problem(const std::string& field, const std::string& what) {
    problems_.push_back(who_ + ": field '" + prefix_ + field + "': " + what);
  }

  std::string text(const char* key, bool required) {
    auto it = fields_.find(key);
    if (it == fields_.end() || it->is_null()) {
      if (required) problem(key, "is required");
      return {};
    }
    if (!it->is_string()) {
      problem(key, std::string("must be a string, got ") + it->type_name());
      return {};
    }
    return it->get<std::string>();
  }

  std::string identifier(const char* key, bool required) {
    std::string v = text(key, required);
    if (!v.empty() && !is_sql_identifier(v))
      problem(key, detail::quote_for_message(v) + " is not a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*)");
    return v;
  }

  // A finite number in [min, max].
  double real(const char* key, double fallback, double min, double max) {
    auto it = fields_.find(key);
    if (it == fields_.end() || it->is_null()) return fallback;
    if (!it->is_number()) {
      problem(key, std::string("must be a number, got ") + it->type_name());
      return fallback;
    }
    const double v = it->get<double>();
    if (!(v >= min && v <= max)) {
      std::ostringstream range;
      range << "must be in [" << min << ", " << max << "], got " << it->dump();
      problem(key, range.str());
      return fallback;
    }
    return v;
  }

  // A 64-bit integer in [min, max]; `limit` names the upper bound in the message.
  std::int64_t integer(const char* key, std::int64_t fallback, std::int64_t min, std::int64_t max, const char* limit) {
    auto it = fields_.find(key);
    if (it == fields_.end()) return fallback;
    if (!it->is_number_integer()) {
      problem(key, std::string("must be an integer, got ") + (it->is_number() ? it->dump() : it->type_name()));
      return fallback;
    }
    const bool too_big = it->is_number_unsigned() ? it->get<std::uint64_t>() > static_cast<std::uint64_t>(max)
                                                  : it->get<std::int64_t>() > max;
    if (too_big) {
      problem(key, "must be <= " + std::to_string(max) + " (the limit " + limit + "), got " + it->dump());
      return fallback;
    }
    auto v = it->get<std::int64_t>();
    if (v < min) {
      problem(key, "must be >= " + std::to_string(min) + ", got " + std::to_string(v));
      return fallback;
    }
    return v;
  }

 private:
  const json& fields_;
  std::string who_;
  std::vector<std::string>& problems_;
  std::string prefix_;
};

// The slice fields; the hyperparameter fields are the trainer's (Hyperparameters::is_field).
const std::set<std::string> kKnownFields = {"name",  "table",  "label",     "features", "text",
                                            "where", "params", "featurizer", "eval_fraction", "min_accuracy",
                                            "max_drop", "min_eval_rows", "confidence", "eval_ref"};

GateSettings read_gate(EntryReader& r) {
  GateSettings g;
  g.eval_fraction = r.real("eval_fraction", g.eval_fraction, 0, 0.9);
  g.min_accuracy = r.real("min_accuracy", g.min_accuracy, 0, 1);
  g.max_drop = r.real("max_drop", g.max_drop, 0, 100);
  g.min_eval_rows = r.integer("min_eval_rows", g.min_eval_rows, 0, std::numeric_limits<std::int64_t>::max(), "int64");
  g.confidence = r.real("confidence", g.confidence, 0.5, 0.999);
  g.eval_ref = r.text("eval_ref", false);
  return g;
}

CatalogEntry read_entry(const json& fields, const std::string& who, std::vector<std::string>& problems) {
  EntryReader r(fields, who, problems);
  CatalogEntry e;
  for (const auto& [key, value] : fields.items())
    if (!kKnownFields.count(key) && !Hyperparameters::is_field(key)) r.problem(key, "unknown field");
  e.name = r.text("name", true);
  if (!e.name.empty()) {
    if (auto why = model_name_problem(e.name)) r.problem("name", *why);
  }
  e.table = r.identifier("table", true);
  e.label = r.identifier("label", true);
  e.text = r.identifier("text", false);
  if (auto it = fields.find("features"); it != fields.end() && !it->is_null()) {
    if (!it->is_array()) {
      r.problem("features", std::string("must be a list of column names, got ") + it->type_name());
    } else {
      for (const auto& f : *it) {
        if (!f.is_string() || !is_sql_identifier(f.get<std::string>())) {
          r.problem("features", "entry " + f.dump() + " is not a plain SQL identifier");
          continue;
        }
        e.features.push_back(f.get<std::string>());
      }
      if (e.features.empty()) r.problem("features", "is empty");
    }
  }
  if (e.text.empty() && e.features.empty() && !fields.contains("features"))
    r.problem("features", "give either 'features' (numeric columns) or 'text' (a text column)");
  if (!e.text.empty() && !e.features.empty()) r.problem("text", "give either 'features' or 'text', not both");
  for (const auto& f : e.features)
    if (f == e.label) r.problem("features", "the label column '" + f + "' cannot also be a feature");
  e.where = r.text("where", false);
  if (auto it = fields.find("params"); it != fields.end() && !it->is_null()) {
    if (!it->is_array()) r.problem("params", std::string("must be a list, got ") + it->type_name());
    else {
      for (const auto& p : *it)
        if (!(p.is_string() || p.is_number() || p.is_boolean() || p.is_null()))
          r.problem("params", "value " + p.dump() + " is not a string, number, boolean or null");
      e.params = *it;
    }
  }
  const auto placeholders = static_cast<std::size_t>(std::count(e.where.begin(), e.where.end(), '?'));
  if (placeholders != e.params.size())
    r.problem("params", "'where' has " + std::to_string(placeholders) + " placeholder(s) but " +
                            std::to_string(e.params.size()) + " value(s) are given");

  e.gate = read_gate(r);

  std::vector<std::string> hyper_problems;
  e.hyperparameters.read_json(fields, hyper_problems);
  for (auto& p : e.hyperparameters.problems()) hyper_problems.push_back(std::move(p));
  for (const auto& p : hyper_problems) problems.push_back(who + ": " + p);
  if (auto it = fields.find("featurizer"); it != fields.end() && !it->is_null()) {
    if (!it->is_object()) {
      r.problem("featurizer", std::string("must be a table/object, got ") + it->type_name());
    } else {
      EntryReader fr(*it, who, problems, "featurizer.");
      for (const auto& [key, value] : it->items())
        if (key != "dimension" && key != "seed") fr.problem(key, "unknown field");
      e.featurizer.dimension = fr.integer("dimension", e.featurizer.dimension, 1, FeaturizerSettings::kMaxDimension,
                                          "FeaturizerSettings::kMaxDimension");
      e.featurizer.seed = fr.integer("seed", e.featurizer.seed, 0, std::numeric_limits<std::int64_t>::max(), "int64");
    }
  }
  return e;
}

[[noreturn]] void report(const std::string& origin, const std::vector<std::string>& problems) {
  std::string msg = origin + " has " + std::to_string(problems.size()) + " problem" +
                    (problems.size() == 1 ? "" : "s") + ":";
  for (const auto& p : problems) msg += "\n  - " + p;
  throw DataError(msg);
}

json toml_to_json(const toml::node& node) {
  if (auto t = node.as_table()) {
    json out = json::object();
    for (const auto& [k, v] : *t) out[std::string(k.str())] = toml_to_json(v);
    return out;
  }
  if (auto a = node.as_array()) {
    json out = json::array();
    for (const auto& v : *a) out.push_back(toml_to_json(v));
    return out;
  }
  if (auto s = node.as_string()) return s->get();
  if (auto i = node.as_integer()) return i->get();
  if (auto f = node.as_floating_point()) return f->get();
  if (auto b = node.as_boolean()) return b->get();
  std::ostringstream shown;
  shown << node.source().begin;
  throw DataError("dates and times are not catalog values (at " + shown.str() + ")");
}

}  // namespace

Catalog::Catalog(std::vector<CatalogEntry> entries) {
  std::vector<std::string> problems;
  std::vector<CatalogEntry> checked;
  // Re-validate through the JSON form so that entries built in code get the same checks as files.
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const std::string who = "adapter " + (entries[i].name.empty() ? "#" + std::to_string(i + 1)
                                                                    : detail::quote_for_message(entries[i].name));
    checked.push_back(read_entry(entries[i].to_json(), who, problems));
  }
  std::set<std::string> seen;
  for (const auto& e : checked)
    if (!e.name.empty() && !seen.insert(e.name).second)
      problems.push_back("adapter " + detail::quote_for_message(e.name) + ": field 'name': duplicate name");
  if (!problems.empty()) report("catalog", problems);
  entries_ = std::move(checked);
}

Catalog Catalog::from_json_value(const json& document, const std::string& origin) {
  std::vector<std::string> problems;
  const json* adapters = nullptr;
  json defaults = json::object();
  if (document.is_array()) {
    adapters = &document;
  } else if (document.is_object()) {
    for (const auto& [key, value] : document.items())
      if (key != "defaults" && key != "adapters") problems.push_back("top level: unknown key '" + key + "'");
    if (auto it = document.find("defaults"); it != document.end()) {
      if (!it->is_object()) problems.push_back("top level: 'defaults' must be a table/object");
      else defaults = *it;
      if (defaults.contains("name")) problems.push_back("defaults: field 'name': cannot have a default");
    }
    if (auto it = document.find("adapters"); it != document.end()) {
      if (!it->is_array()) problems.push_back("top level: 'adapters' must be a list");
      else adapters = &*it;
    } else {
      problems.push_back("top level: 'adapters' is missing");
    }
  } else {
    problems.push_back(std::string("a catalog is an object with 'adapters', got ") + document.type_name());
  }
  std::vector<CatalogEntry> entries;
  std::set<std::string> seen;
  if (adapters) {
    std::size_t index = 0;
    for (const auto& raw : *adapters) {
      ++index;
      if (!raw.is_object()) {
        problems.push_back("adapter #" + std::to_string(index) + ": must be a table/object, got " + raw.type_name());
        continue;
      }
      json fields = defaults;
      fields.update(raw);
      std::string who = "adapter #" + std::to_string(index);
      if (auto n = raw.find("name"); n != raw.end() && n->is_string())
        who = "adapter " + detail::quote_for_message(n->get<std::string>()) + " (#" + std::to_string(index) + ")";
      CatalogEntry e = read_entry(fields, who, problems);
      if (!e.name.empty() && !seen.insert(e.name).second)
        problems.push_back(who + ": field 'name': duplicate name");
      entries.push_back(std::move(e));
    }
  }
  if (!problems.empty()) report(origin, problems);
  Catalog c;
  c.entries_ = std::move(entries);
  return c;
}

Catalog Catalog::from_json(std::string_view text, const std::string& origin) {
  json doc;
  // A key given twice in one object would silently keep the last value: refused, naming the key.
  std::vector<std::set<std::string>> keys;
  std::string duplicate;
  auto check = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) keys.emplace_back();
    else if (event == json::parse_event_t::object_end && !keys.empty()) keys.pop_back();
    else if (event == json::parse_event_t::key && !keys.empty() && !keys.back().insert(parsed.get<std::string>()).second &&
             duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  try {
    doc = json::parse(text.begin(), text.end(), check);
  } catch (const json::parse_error& e) {
    throw DataError(origin + ": invalid JSON at byte " + std::to_string(e.byte) + ": " + e.what());
  } catch (const json::exception& e) {
    // A number too large for a double (`1e400`) is an out_of_range error, not a parse_error.
    throw DataError(origin + ": invalid JSON: " + e.what());
  }
  if (!duplicate.empty())
    throw DataError(origin + ": key " + detail::quote_for_message(duplicate) + " appears twice in one object");
  return from_json_value(doc, origin);
}

Catalog Catalog::from_toml(std::string_view text, const std::string& origin) {
  toml::table table;
  try {
    table = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    std::ostringstream where;
    where << e.source().begin;
    throw DataError(origin + ": invalid TOML at " + where.str() + ": " + std::string(e.description()));
  }
  return from_json_value(toml_to_json(table), origin);
}

Catalog Catalog::load(const std::filesystem::path& path) {
  const std::string ext = path.extension().string();
  if (ext != ".json" && ext != ".toml")
    throw ConfigError("catalog " + path.string() + ": expected a .json or .toml file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw NotFoundError("catalog file " + path.string() + " does not exist or cannot be read");
  std::ostringstream buf;
  buf << in.rdbuf();
  return ext == ".json" ? from_json(buf.str(), path.string()) : from_toml(buf.str(), path.string());
}

const CatalogEntry* Catalog::find(std::string_view name) const noexcept {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

const CatalogEntry& Catalog::at(std::string_view name) const {
  if (auto* e = find(name)) return *e;
  throw NotFoundError("adapter " + detail::quote_for_message(name) + " is not in the catalog");
}

json Catalog::to_json() const {
  json list = json::array();
  for (const auto& e : entries_) list.push_back(e.to_json());
  return {{"adapters", list}};
}

}  // namespace mlops
