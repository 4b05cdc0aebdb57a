/// @file dolt.hpp
/// DoltSource: versioned training data from embedded DoltLite or a Dolt sql-server, read at a pinned
/// commit into a Dataset (X row-major n×d float32, y int32 class indices; see dataset.hpp).
///
/// Two backends behind one interface, chosen by the URI:
///  - `doltlite:///abs/path.db`, `doltlite:relative.db` or a bare path: embedded DoltLite, loaded at run
///    time from `libdoltlite.so` (DoltOptions::doltlite_lib, else `$DOLTLITE_LIB`, else the library set by
///    set_default_doltlite_library(), which the Python package does from the installed `doltlite` wheel).
///  - `mysql://user[:password]@host[:port]/database?branch=…&ssl-mode=…&ssl-ca=…&unix_socket=…`: a Dolt
///    sql-server over the MySQL protocol. The password may also come from `$MLOPS_DOLT_PASSWORD`. A MySQL
///    or MariaDB server that is not Dolt works for reads at `at = nullopt` (no version control).
///    TLS: a host other than loopback defaults to ssl-mode=VERIFY_IDENTITY; loopback and unix sockets to
///    the client library's default; `ssl-mode=DISABLED|PREFERRED|REQUIRED|VERIFY_CA|VERIFY_IDENTITY` overrides.
///
/// Passwords never appear in messages or lineage: `uri()` and `lineage.uri` are redacted. A DoltSource
/// serialises its own calls (one connection); use one per thread for parallel reads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "mlops/dataset.hpp"
#include "mlops/error.hpp"
#include "mlops/table.hpp"

namespace mlops {

/// Bytes bound as a BLOB parameter.
struct Blob {
  std::string bytes;
  bool operator==(const Blob&) const = default;
};

/// A value bound to a `?` placeholder: NULL, integer, real, text (UTF-8) or bytes.
using SqlValue = std::variant<std::nullptr_t, std::int64_t, double, std::string, Blob>;

/// One Dolt commit. `hash` is opaque (40 hex for DoltLite, 32 base32 for Dolt).
struct Commit {
  std::string hash;
  std::string message;
  std::string author;  ///< committer name
  std::string email;
  std::string date;    ///< as the server reports it, e.g. "2026-01-31 12:00:00"
  bool operator==(const Commit&) const = default;
};

/// Row changes of one table between two commits.
struct Diff {
  std::string from_commit;  ///< resolved hash of the `from` side
  std::string to_commit;    ///< resolved hash of the `to` side
  std::string table;
  std::vector<std::string> key;  ///< the table's primary-key columns, in key order
  std::int64_t added = 0;     ///< rows only in `to` (or that entered the filtered slice)
  std::int64_t modified = 0;  ///< rows in both whose values changed (and in the slice on both sides)
  std::int64_t removed = 0;   ///< rows only in `from` (or that left the slice)
  /// One row per change: column `diff_type` ("added", "modified", "removed"), then `from_<col>` and
  /// `to_<col>` for every column of the table (NULL on the side where the row is absent).
  Table rows;
};

/// The outcome of DoltSource::merge.
struct MergeResult {
  std::string commit;         ///< the target branch's tip after the merge
  bool fast_forward = false;  ///< the target only moved forward to the merged branch's tip
  bool up_to_date = false;    ///< the branch was already merged: nothing changed
};

/// The rows of one table that a merge could not combine.
struct TableConflicts {
  std::string table;
  /// The primary key of each conflicting row, as "col=value[, col=value]" (text quoted), key order.
  std::vector<std::string> keys;
};

/// A merge met rows changed differently on both sides; nothing was merged. Id "mlops.conflict".
class MergeConflictError : public ConflictError {
 public:
  MergeConflictError(const std::string& message, std::vector<TableConflicts> conflicts)
      : ConflictError(message), conflicts_(std::move(conflicts)) {}
  /// Every conflicting table with its conflicting keys, tables by name.
  [[nodiscard]] const std::vector<TableConflicts>& conflicts() const noexcept { return conflicts_; }

 private:
  std::vector<TableConflicts> conflicts_;
};

/// Connection settings.
struct DoltOptions {
  std::string doltlite_lib;      ///< path of libdoltlite.so (empty: $DOLTLITE_LIB, then the default)
  int connect_timeout_s = 10;    ///< MySQL: connect timeout, seconds
  int read_timeout_s = 600;      ///< MySQL: read timeout per network read, seconds
  int write_timeout_s = 600;     ///< MySQL: write timeout, seconds
  int max_retries = 3;           ///< pinned reads retried this many times after a lost connection
  bool create = false;           ///< DoltLite: create the database file when it is missing (false: NotFoundError)
};

/// Which rows of a slice a read keeps when some are held out for evaluation.
enum class HoldoutSide { All, Train, Evaluation };

/// Evaluation rows chosen by a hash of each row's primary key: a row is held out when the first 64 bits of
/// SHA-256(`salt` NUL canonical key) fall below `fraction`·2^64. The canonical key is each key column's
/// value in key order, numbers by value (5 and 5.0 alike) and text or bytes byte for byte, so a row keeps
/// its side across commits whatever else changes, and a new row's side follows the same rule.
struct Holdout {
  HoldoutSide side = HoldoutSide::All;  ///< All: no split (salt and fraction unused)
  std::string salt;                     ///< separates the evaluation sets of different adapters (their name)
  double fraction = 0;                  ///< share of rows held out, in [0, 1)
};

/// What to read for a Dataset.
struct DatasetSpec {
  std::string table;                  ///< table name (letters, digits, `_`, `$`)
  std::string label;                  ///< label column (integer or text values)
  std::vector<std::string> features;  ///< numeric columns, or BLOB columns of float32 (a fixed-width block)
  std::string text;                   ///< a text column to featurize instead of `features`
  std::string where;                  ///< SQL condition on the rows (empty: all), values as `?`
  std::vector<SqlValue> params;       ///< values for the `?` in `where`
  /// ref to read at (branch, tag, `HEAD~n`, hash), resolved to a hash once; nullopt: the current rows,
  /// unpinned (the only choice on a server without version control)
  std::optional<std::string> at = std::string("HEAD");
  bool drop_invalid = false;          ///< skip rows with a NULL label or NULL/NaN/non-numeric feature
  int text_dimension = 1024;          ///< featurizer output width
  std::uint64_t text_seed = 0;        ///< featurizer hash seed
  /// Train or Evaluation keeps one side of the hashed split (recorded in the lineage as `holdout`).
  /// The table needs a primary key then (DataError naming the table otherwise).
  Holdout holdout;
};

/// Versioned SQL data: version control, reads at a commit, CSV import. See the file comment.
class DoltSource {
 public:
  /// Opens the source (DoltLite: opens or creates the file; MySQL: connects).
  /// @throws ConfigError for a malformed URI or option; DataSourceError when it cannot connect or load
  explicit DoltSource(const std::string& uri, DoltOptions options = {});
  ~DoltSource();
  DoltSource(DoltSource&&) noexcept;
  DoltSource& operator=(DoltSource&&) noexcept;

  /// The URI with any password removed.
  [[nodiscard]] const std::string& uri() const noexcept;
  /// "doltlite", "dolt" or "mysql" (a server without version control).
  [[nodiscard]] std::string backend() const;

  // ---- version control -----------------------------------------------------------------------------
  /// The commit at the tip of the active branch. @throws DataSourceError
  Commit head();
  /// Up to `limit` commits reachable from HEAD, newest first.
  std::vector<Commit> log(int limit = 20);
  /// The hash a ref names (branch, tag, `HEAD~n`, hash). @throws NotFoundError naming the ref
  std::string resolve(const std::string& ref);
  /// The commit a ref names. @throws NotFoundError
  Commit commit_info(const std::string& ref);
  std::vector<std::string> branches();
  std::string active_branch();
  /// @throws ConflictError if `name` exists; NotFoundError if `start` does not resolve
  void create_branch(const std::string& name, const std::string& start = "HEAD");
  /// Makes `name` the active branch (DoltLite: also the file's default branch). @throws NotFoundError
  void checkout(const std::string& name);
  /// Stages every change and commits it. `author` is "Name <email>" (empty: the default).
  /// @throws ConflictError when there is nothing to commit
  Commit commit(const std::string& message, const std::string& author = {});
  /// Deletes branch `name`. Unless `force`, only a branch whose commits are all merged into the active
  /// branch. @throws NotFoundError if it does not exist; ConflictError for the active branch or, without
  /// `force`, for unmerged commits
  void delete_branch(const std::string& name, bool force = false);
  /// Merges `branch` into `into` (empty: the active branch): a fast-forward when `into` has no commits of
  /// its own, else a merge commit with `message` (empty: "Merge branch '<branch>' into <into>"). The
  /// active branch is the same afterwards.
  /// @throws MergeConflictError naming every conflicting table and key (nothing merged, `into` and the
  ///         working set unchanged); ConflictError when `into` has uncommitted changes; NotFoundError for
  ///         an unknown branch
  MergeResult merge(const std::string& branch, const std::string& message = {}, const std::string& into = {});
  /// The newest commit both refs descend from. @throws NotFoundError for an unknown ref; DataSourceError
  ///         when they share no history
  std::string merge_base(const std::string& a, const std::string& b);
  std::vector<std::string> tags();
  /// Tags `ref` as `name`. @throws ConflictError if the tag exists
  void create_tag(const std::string& name, const std::string& ref = "HEAD");

  // ---- reading and writing -------------------------------------------------------------------------
  /// Runs a write (or any statement) with bound values; returns the affected row count.
  std::int64_t execute(const std::string& sql, const std::vector<SqlValue>& params = {});
  /// Runs a query; `at` (a ref) runs it against that commit, read-only.
  Table query(const std::string& sql, const std::vector<SqlValue>& params = {},
              const std::optional<std::string>& at = std::nullopt);
  /// Reads a training set at one commit (see DatasetSpec). `lineage.query` is the SQL that reads these
  /// rows at that commit (on DoltLite, a read of an unchanged HEAD scans the live table, which holds
  /// the same rows, instead of materialising `dolt_at_<table>`).
  /// @throws DataError naming table, column and row key for a NULL label, a NULL/NaN/non-numeric feature
  ///         (unless drop_invalid) or an unknown column, and for no rows at all (naming the where
  ///         clause and its params); NotFoundError for an unknown ref;
  ///         DataSourceError after `max_retries` lost connections (never a partial Dataset)
  Dataset dataset(const DatasetSpec& spec);
  /// Reads many slices of one table in one scan at one commit: for each of `values`, in that order, the
  /// Dataset that dataset() returns with `where = "<by> = ?"` and the value as its one parameter (same
  /// X, y, row order, classes, lineage and digest); a value that matches no row gets an empty Dataset here,
  /// where dataset() refuses it, so one failing slice does not fail the others. `spec.where` and
  /// `spec.params` must be empty. Values
  /// match `by` as numbers by value and as text or bytes byte for byte (a server's case-insensitive
  /// collation is not applied). Memory: the slices' rows in blocks as the scan goes, then each slice's
  /// arrays in turn, so the peak is the result plus one slice and a block per slice.
  /// @throws ConfigError for a where/params, a bad `by`, a NULL or repeated value; otherwise as dataset()
  ///         (a bad row in any wanted slice fails the whole read unless drop_invalid)
  /// @param salts with a holdout in `spec`: the salt of each value's slice (empty: `spec.holdout.salt`)
  std::vector<Dataset> datasets(const DatasetSpec& spec, const std::string& by, const std::vector<SqlValue>& values,
                                const std::vector<std::string>& salts = {});
  /// Rows of `table` matching `where` at `at`.
  std::int64_t count(const std::string& table, const std::string& where = {},
                     const std::vector<SqlValue>& params = {},
                     const std::optional<std::string>& at = std::string("HEAD"));
  /// Row changes of `table` from `from_ref` to `to_ref`; `where` (on the table's own column names)
  /// selects the slice on both sides, so a row that leaves the slice counts as removed.
  Diff diff(const std::string& from_ref, const std::string& to_ref, const std::string& table,
            const std::string& where = {}, const std::vector<SqlValue>& params = {});
  /// The tables whose rows differ between `from_ref` and `to_ref` (added, changed or dropped), by name.
  /// @throws NotFoundError for an unknown ref
  std::vector<std::string> changed_tables(const std::string& from_ref, const std::string& to_ref);
  /// Imports a CSV file (header row first; UTF-8) or an http(s) URL into `table` and commits.
  /// Creates the table when missing (INTEGER, REAL or TEXT inferred per column); "replace" deletes the
  /// old rows first, "upsert" inserts or replaces by primary key. Returns the new commit (HEAD unchanged
  /// when the data were already there).
  /// @throws DataError with the line number for a ragged row, bad UTF-8 or a duplicate key; nothing is
  ///         written or committed then. ConfigError for a bad mode or an empty primary key.
  Commit import_csv(const std::string& table, const std::string& path_or_url,
                    const std::vector<std::string>& primary_key, const std::string& message,
                    const std::string& mode = "replace");

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

/// Where embedded DoltLite is loaded from when neither DoltOptions::doltlite_lib nor $DOLTLITE_LIB is set.
void set_default_doltlite_library(const std::string& path);

}  // namespace mlops
