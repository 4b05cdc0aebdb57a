// The SQL that differs between DoltLite, a Dolt sql-server and a plain MySQL/MariaDB server, in one
// place (internal). Every method returns SQL text with `?` for values; identifiers are validated and
// quoted here, commit hashes are validated before they are written into the text.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mlops::detail {

enum class Backend { DoltLite, Dolt, MySql };

class Dialect {
 public:
  explicit Dialect(Backend b) : backend_(b) {}
  [[nodiscard]] Backend backend() const noexcept { return backend_; }
  [[nodiscard]] const char* name() const noexcept;
  /// Whether the server keeps versions (DoltLite, Dolt).
  [[nodiscard]] bool versioned() const noexcept { return backend_ != Backend::MySql; }
  /// Whether a table scan returns rows in primary-key order without ORDER BY (DoltLite's tables do).
  [[nodiscard]] bool scans_in_key_order() const noexcept { return backend_ == Backend::DoltLite; }
  /// Whether reading a table at a commit materialises a copy (DoltLite's dolt_at_*), so reading the
  /// live table is worth it when the commit is the unchanged HEAD.
  [[nodiscard]] bool history_read_copies() const noexcept { return backend_ == Backend::DoltLite; }

  /// A table name: 1–64 characters of letters, digits, `_`, `$`, not starting with a digit.
  /// @throws ConfigError naming it otherwise
  static void check_table(std::string_view name);
  /// A column name: 1–64 bytes of valid UTF-8 without control characters. @throws ConfigError
  static void check_column(std::string_view name);
  /// A commit hash: 32 or 40 letters/digits. @throws DataSourceError
  static void check_hash(std::string_view hash);
  /// A branch or tag name for version-control calls (no control characters, not empty). @throws ConfigError
  static void check_ref_name(std::string_view name, const char* what);

  [[nodiscard]] std::string quote(std::string_view ident) const;  // "x" (DoltLite) or `x` (MySQL)
  [[nodiscard]] std::string table(std::string_view table) const;
  /// The table as it was at `hash` (empty hash: the current rows; the only choice on MySql).
  [[nodiscard]] std::string table_at(std::string_view table, std::string_view hash) const;

  [[nodiscard]] std::string hashof() const;          // one value: the ref
  [[nodiscard]] std::string log(int limit) const;    // commit_hash, committer, email, date, message
  [[nodiscard]] std::string commit_by_hash() const;  // as log, one value: the hash
  [[nodiscard]] std::string active_branch() const;
  [[nodiscard]] std::string branches() const;
  [[nodiscard]] std::string tags() const;
  /// A version-control procedure with `nargs` values, e.g. call("commit", 2) → SELECT dolt_commit(?, ?).
  [[nodiscard]] std::string call(std::string_view procedure, std::size_t nargs) const;
  /// Tables with uncommitted changes matching one value (the table name).
  [[nodiscard]] std::string table_status() const;
  /// Two values (commit hashes): from_table_name, to_table_name, data_change per changed table.
  [[nodiscard]] std::string diff_summary() const;
  /// Every table with uncommitted changes: table_name.
  [[nodiscard]] std::string status() const;
  /// Two values (commit hashes); one value: their merge base.
  [[nodiscard]] std::string merge_base() const;
  /// Inside a merge that stopped on conflicts: table, num_conflicts.
  [[nodiscard]] std::string conflicts() const;
  /// Inside a merge that stopped on conflicts, one row per conflict: base_<col>, our_<col>,
  /// their_<col>, our_diff_type, their_diff_type, ...
  [[nodiscard]] std::string conflict_rows(std::string_view table) const;
  [[nodiscard]] std::string diff(std::string_view table, std::string_view from_hash, std::string_view to_hash) const;
  /// The primary key of `table`; read its result with key_columns().
  [[nodiscard]] std::string primary_key(std::string_view table) const;
  [[nodiscard]] std::string select(const std::vector<std::string>& columns, std::string_view table,
                                   std::string_view hash, std::string_view where,
                                   const std::vector<std::string>& order_by) const;
  [[nodiscard]] std::string count(std::string_view table, std::string_view hash, std::string_view where) const;
  [[nodiscard]] std::string begin() const;
  [[nodiscard]] std::string create_table(std::string_view table, const std::vector<std::string>& columns,
                                         const std::vector<std::string>& types,
                                         const std::vector<std::string>& primary_key) const;
  [[nodiscard]] std::string table_exists() const;  // one value: the table name; returns a row when it exists
  [[nodiscard]] std::string insert(std::string_view table, const std::vector<std::string>& columns, bool replace,
                                   std::size_t rows) const;
  /// Type names for inferred CSV column types.
  [[nodiscard]] std::string type_name(char kind) const;  // 'i' integer, 'r' real, 't' text

 private:
  Backend backend_;
};

class RowReader;
/// The key column names, in key order, from the result of Dialect::primary_key().
std::vector<std::string> key_columns(RowReader& r);

}  // namespace mlops::detail
