#include "dolt/dialect.hpp"

#include <algorithm>
#include <cctype>

#include "core/text.hpp"
#include "dolt/connection.hpp"
#include "mlops/error.hpp"

namespace mlops::detail {

const char* Dialect::name() const noexcept {
  switch (backend_) {
    case Backend::DoltLite: return "doltlite";
    case Backend::Dolt: return "dolt";
    case Backend::MySql: return "mysql";
  }
  return "?";
}

void Dialect::check_table(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 64 && std::isdigit(static_cast<unsigned char>(name[0])) == 0;
  for (char c : name) ok = ok && (std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '$');
  if (!ok)
    throw ConfigError("table name " + quote_for_message(name) +
                      " is not valid: use 1-64 letters, digits, '_' or '$', not starting with a digit");
}

void Dialect::check_column(std::string_view name) {
  if (name.empty() || name.size() > 64) throw ConfigError("column name " + quote_for_message(name) + " must have 1-64 bytes");
  if (auto why = utf8_error(name)) throw ConfigError("column name " + quote_for_message(name) + " is not valid UTF-8: " + *why);
  if (find_control_character(name)) throw ConfigError("column name " + quote_for_message(name) + " contains a control character");
}

void Dialect::check_hash(std::string_view hash) {
  bool ok = hash.size() == 32 || hash.size() == 40;
  for (char c : hash) ok = ok && std::isalnum(static_cast<unsigned char>(c)) != 0;
  if (!ok) throw DataSourceError("the server returned " + quote_for_message(hash) + ", which is not a commit hash");
}

void Dialect::check_ref_name(std::string_view name, const char* what) {
  if (name.empty() || name.size() > 255) throw ConfigError(std::string(what) + " must have 1-255 bytes");
  if (auto why = utf8_error(name)) throw ConfigError(std::string(what) + " " + quote_for_message(name) + " is not valid UTF-8: " + *why);
  if (find_control_character(name) || name.find(' ') != std::string_view::npos)
    throw ConfigError(std::string(what) + " " + quote_for_message(name) + " contains a space or control character");
}

std::string Dialect::quote(std::string_view ident) const {
  const char q = backend_ == Backend::DoltLite ? '"' : '`';
  std::string out(1, q);
  for (char c : ident) {
    if (c == q) out += q;
    out += c;
  }
  out += q;
  return out;
}

std::string Dialect::table(std::string_view t) const {
  check_table(t);
  return quote(t);
}

std::string Dialect::table_at(std::string_view t, std::string_view hash) const {
  check_table(t);
  if (hash.empty()) return quote(t);
  check_hash(hash);
  if (backend_ == Backend::MySql) throw DataSourceError("a MySQL server without Dolt cannot read at a commit");
  if (backend_ == Backend::DoltLite) return quote("dolt_at_" + std::string(t)) + "('" + std::string(hash) + "')";
  return quote(t) + " AS OF '" + std::string(hash) + "'";
}

std::string Dialect::hashof() const {
  return backend_ == Backend::DoltLite ? "SELECT dolt_hashof(?)" : "SELECT DOLT_HASHOF(?)";
}

std::string Dialect::log(int limit) const {
  // Columns by name: Dolt's dolt_log has gained columns over time.
  std::string cols = backend_ == Backend::DoltLite ? "commit_hash, committer, email, date, message"
                                                   : "commit_hash, committer, email, `date`, message";
  return "SELECT " + cols + " FROM dolt_log LIMIT " + std::to_string(limit < 0 ? 0 : limit);
}

std::string Dialect::commit_by_hash() const {
  std::string cols = backend_ == Backend::DoltLite ? "commit_hash, committer, email, date, message"
                                                   : "commit_hash, committer, email, `date`, message";
  return "SELECT " + cols + " FROM dolt_log WHERE commit_hash = ?";
}

std::string Dialect::active_branch() const { return "SELECT active_branch()"; }
std::string Dialect::branches() const { return "SELECT name FROM dolt_branches ORDER BY name"; }
std::string Dialect::tags() const { return "SELECT tag_name FROM dolt_tags ORDER BY tag_name"; }

std::string Dialect::call(std::string_view procedure, std::size_t nargs) const {
  std::string args;
  for (std::size_t i = 0; i < nargs; ++i) args += i ? ", ?" : "?";
  if (backend_ == Backend::DoltLite) return "SELECT dolt_" + std::string(procedure) + "(" + args + ")";
  std::string upper;
  for (char c : procedure) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return "CALL DOLT_" + upper + "(" + args + ")";
}

std::string Dialect::table_status() const { return "SELECT table_name FROM dolt_status WHERE table_name = ?"; }

std::string Dialect::status() const { return "SELECT table_name FROM dolt_status ORDER BY table_name"; }

std::string Dialect::diff_summary() const {
  return std::string("SELECT from_table_name, to_table_name, data_change FROM ") +
         (backend_ == Backend::DoltLite ? "dolt_diff_summary" : "DOLT_DIFF_SUMMARY") + "(?, ?)";
}

std::string Dialect::merge_base() const {
  return backend_ == Backend::DoltLite ? "SELECT dolt_merge_base(?, ?)" : "SELECT DOLT_MERGE_BASE(?, ?)";
}

std::string Dialect::conflicts() const {
  return "SELECT " + quote("table") + ", num_conflicts FROM dolt_conflicts ORDER BY " + quote("table");
}

std::string Dialect::conflict_rows(std::string_view t) const {
  check_table(t);
  return "SELECT * FROM " + quote("dolt_conflicts_" + std::string(t));
}

std::string Dialect::diff(std::string_view t, std::string_view from_hash, std::string_view to_hash) const {
  check_table(t);
  check_hash(from_hash);
  check_hash(to_hash);
  if (backend_ == Backend::DoltLite)
    return "SELECT * FROM " + quote("dolt_diff_" + std::string(t)) + "('" + std::string(from_hash) + "', '" +
           std::string(to_hash) + "')";
  return "SELECT * FROM DOLT_DIFF('" + std::string(from_hash) + "', '" + std::string(to_hash) + "', '" +
         std::string(t) + "')";
}

std::string Dialect::primary_key(std::string_view t) const {
  // The name is checked (letters, digits, '_', '$'), so it is safe inside a string literal.
  if (backend_ == Backend::DoltLite)
    return "SELECT name FROM pragma_table_info('" + (check_table(t), std::string(t)) + "') WHERE pk > 0 ORDER BY pk";
  return "SHOW KEYS FROM " + table(t) + " WHERE Key_name = 'PRIMARY'";
}

std::vector<std::string> key_columns(RowReader& r) {
  // SHOW KEYS names its columns and may list them out of order; pragma_table_info gives one, in order.
  std::size_t col = 0, seq = r.columns();
  for (std::size_t i = 0; i < r.columns(); ++i) {
    if (r.name(i) == "Column_name") col = i;
    if (r.name(i) == "Seq_in_index") seq = i;
  }
  std::vector<std::pair<std::int64_t, std::string>> keys;
  while (r.next()) {
    const std::int64_t at = seq < r.columns() ? r.get_int(seq) : static_cast<std::int64_t>(keys.size());
    keys.emplace_back(at, r.kind(col) == CellKind::Null ? std::string() : std::string(r.get_text(col)));
  }
  std::stable_sort(keys.begin(), keys.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> out;
  for (auto& k : keys) out.push_back(std::move(k.second));
  return out;
}

std::string Dialect::select(const std::vector<std::string>& columns, std::string_view t, std::string_view hash,
                            std::string_view where, const std::vector<std::string>& order_by) const {
  // SQLite reads an unknown double-quoted name as a string literal; a qualified name is an error instead.
  const bool qualify = backend_ == Backend::DoltLite;
  std::string sql = "SELECT ";
  for (std::size_t i = 0; i < columns.size(); ++i) {
    check_column(columns[i]);
    if (i) sql += ", ";
    sql += (qualify ? "s." : "") + quote(columns[i]);
  }
  if (columns.empty()) sql += "*";
  sql += " FROM " + table_at(t, hash) + (qualify ? " AS s" : "");
  if (!where.empty()) sql += " WHERE (" + std::string(where) + ")";
  for (std::size_t i = 0; i < order_by.size(); ++i) sql += (i ? ", " : " ORDER BY ") + quote(order_by[i]);
  return sql;
}

std::string Dialect::count(std::string_view t, std::string_view hash, std::string_view where) const {
  std::string sql = "SELECT COUNT(*) FROM " + table_at(t, hash);
  if (!where.empty()) sql += " WHERE (" + std::string(where) + ")";
  return sql;
}

std::string Dialect::begin() const { return backend_ == Backend::DoltLite ? "BEGIN" : "START TRANSACTION"; }

std::string Dialect::create_table(std::string_view t, const std::vector<std::string>& columns,
                                  const std::vector<std::string>& types,
                                  const std::vector<std::string>& primary_key) const {
  std::string sql = "CREATE TABLE " + table(t) + " (";
  for (std::size_t i = 0; i < columns.size(); ++i) {
    check_column(columns[i]);
    sql += (i ? ", " : "") + quote(columns[i]) + " " + types.at(i);
  }
  sql += ", PRIMARY KEY (";
  for (std::size_t i = 0; i < primary_key.size(); ++i) sql += (i ? ", " : "") + quote(primary_key[i]);
  return sql + "))";
}

std::string Dialect::table_exists() const {
  if (backend_ == Backend::DoltLite) return "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?";
  return "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?";
}

std::string Dialect::insert(std::string_view t, const std::vector<std::string>& columns, bool replace,
                            std::size_t rows) const {
  std::string sql = replace ? (backend_ == Backend::DoltLite ? "INSERT OR REPLACE INTO " : "REPLACE INTO ")
                            : "INSERT INTO ";
  sql += table(t) + " (";
  std::string row = "(";
  for (std::size_t i = 0; i < columns.size(); ++i) {
    check_column(columns[i]);
    sql += (i ? ", " : "") + quote(columns[i]);
    row += i ? ", ?" : "?";
  }
  row += ")";
  sql += ") VALUES ";
  for (std::size_t r = 0; r < rows; ++r) sql += (r ? ", " : "") + row;
  return sql;
}

std::string Dialect::type_name(char kind) const {
  switch (kind) {
    case 'i': return backend_ == Backend::DoltLite ? "INTEGER" : "BIGINT";
    case 'r': return backend_ == Backend::DoltLite ? "REAL" : "DOUBLE";
    default: return backend_ == Backend::DoltLite ? "TEXT" : "VARCHAR(1024)";
  }
}

}  // namespace mlops::detail
