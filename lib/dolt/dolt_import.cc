// DoltSource, import: a CSV file or URL into a table, checked whole before anything is written.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "core/text.hpp"
#include "dolt/csv.hpp"
#include "dolt/source_impl.hpp"
#include "http/http.hpp"

namespace mlops {

using detail::quote_for_message;

Commit DoltSource::Impl::import_csv(const std::string& table, const std::string& source,
                                    const std::vector<std::string>& pk, const std::string& message,
                                    const std::string& mode) {
  require_versioned("import_csv");
  detail::Dialect::check_table(table);
  if (mode != "replace" && mode != "upsert")
    throw ConfigError("import mode must be 'replace' or 'upsert', got " + quote_for_message(mode));
  if (pk.empty()) throw ConfigError("import of " + quote_for_message(table) + " needs a primary key");
  if (message.empty()) throw ConfigError("import of " + quote_for_message(table) + " needs a commit message");
  for (const auto& k : pk) detail::Dialect::check_column(k);

  // Read the whole file first: nothing is written unless every row is valid.
  const auto src = detail::read_csv_source(source);
  const std::string& text = src.text;
  const std::string& what = src.shown;
  const auto csv = detail::parse_csv(text, "CSV " + what);
  for (const auto& h : csv.header) detail::Dialect::check_column(h);
  detail::check_csv_keys(csv, pk, "CSV " + what);

  refresh();
  const bool exists = detail::query_scalar(*conn, dialect.table_exists(), {table}).has_value();
  conn->execute(dialect.begin(), {});
  try {
    if (!exists) {
      std::vector<std::string> types;
      for (char k : csv.kinds) types.push_back(dialect.type_name(k));
      // MySQL cannot key a TEXT column of unbounded length; DoltLite's TEXT is fine.
      conn->execute(dialect.create_table(table, csv.header, types, pk), {});
    } else if (mode == "replace") {
      conn->execute("DELETE FROM " + dialect.table(table), {});
    }
    const std::size_t ncol = csv.header.size();
    const std::size_t batch = std::max<std::size_t>(1, 30000 / std::max<std::size_t>(ncol, 1) / 4);
    for (std::size_t start = 0; start < csv.rows.size(); start += batch) {
      const std::size_t n = std::min(batch, csv.rows.size() - start);
      std::vector<SqlValue> values;
      values.reserve(n * ncol);
      for (std::size_t r = start; r < start + n; ++r)
        for (std::size_t c = 0; c < ncol; ++c) {
          const auto& v = csv.rows[r][c];
          if (!v) values.emplace_back(nullptr);
          else if (csv.kinds[c] == 'i') values.emplace_back(static_cast<std::int64_t>(std::stoll(*v)));
          else if (csv.kinds[c] == 'r') values.emplace_back(std::stod(*v));
          else values.emplace_back(*v);
        }
      try {
        conn->execute(dialect.insert(table, csv.header, true, n), values);
      } catch (const detail::ConnectionLost&) {
        throw;
      } catch (const DataSourceError& e) {
        throw DataError("CSV " + what + ", lines " + std::to_string(csv.lines[start]) + "-" +
                        std::to_string(csv.lines[start + n - 1]) + ": " + std::string(e.detail()));
      }
    }
    conn->execute("COMMIT", {});
  } catch (...) {
    try {
      conn->execute("ROLLBACK", {});
    } catch (const Error&) {
    }
    settle();
    throw;
  }
  settle();
  // A message naming the source (a link with ?token=...) never puts the secret into the history.
  if (detail::query_scalar(*conn, dialect.table_status(), {table}).has_value())
    return commit(src.secrets_removed(message), {}, {table});
  return commit_info("HEAD");
}

Commit DoltSource::import_csv(const std::string& table, const std::string& path_or_url,
                              const std::vector<std::string>& primary_key, const std::string& message,
                              const std::string& mode) {
  MLOPS_LOCK;
  return impl_->import_csv(table, path_or_url, primary_key, message, mode);
}

}  // namespace mlops
