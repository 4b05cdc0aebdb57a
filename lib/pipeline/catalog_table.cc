// load_catalog_table: a catalog versioned with the data, one row per adapter.
#include "core/text.hpp"
#include "mlops/dolt.hpp"
#include "mlops/error.hpp"
#include "mlops/pipeline.hpp"

namespace mlops {

using nlohmann::json;

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
      } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e400
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

}  // namespace mlops
