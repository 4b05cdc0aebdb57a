// DoltSource's state, shared by its files (internal): dolt_source.cc opens the connection, dolt_read.cc
// reads rows, dolt_vcs.cc does version control and diffs, dolt_import.cc imports CSV.
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dolt/connection.hpp"
#include "dolt/dialect.hpp"
#include "dolt/uri.hpp"
#include "mlops/dolt.hpp"
#include "mlops/error.hpp"

namespace mlops {

namespace detail {
/// A cell as a short human-readable value for messages ("NULL", numbers, quoted text, "<n bytes>").
std::string cell_text(RowReader& r, std::size_t i);
/// Whether a server's message mentions `needle` (how its errors are told apart).
inline bool contains(std::string_view hay, std::string_view needle) { return hay.find(needle) != std::string_view::npos; }
}  // namespace detail

struct DoltSource::Impl {
  std::string display;
  DoltOptions opts;
  detail::SourceUri parsed;
  detail::Dialect dialect{detail::Backend::DoltLite};
  std::string lib_path;
  std::unique_ptr<detail::Connection> conn;
  std::mutex mutex;

  // ---- the connection (dolt_source.cc) --------------------------------------------------------------
  void open();
  void refresh() { conn->refresh(); }
  void settle() { conn->settle(); }
  void require_versioned(const char* op) const;
  std::vector<std::string> column_strings(const std::string& sql, const std::vector<SqlValue>& params);

  // Runs an idempotent read, reconnecting after a lost connection up to max_retries times.
  template <typename F>
  auto read(F&& f) {
    refresh();
    for (int attempt = 0;; ++attempt) {
      try {
        auto result = f();
        settle();
        return result;
      } catch (const detail::ConnectionLost& e) {
        auto give_up = [&] {
          return DataSourceError(std::string(e.detail()) + "; gave up after " + std::to_string(attempt + 1) + " attempts");
        };
        if (attempt >= opts.max_retries) throw give_up();
        std::this_thread::sleep_for(std::chrono::milliseconds(100 * (attempt + 1)));
        if (!conn->reconnect_after_loss()) throw give_up();
      }
    }
  }

  // ---- version control (dolt_vcs.cc) -------------------------------------------------------------
  std::string resolve(const std::string& ref);
  std::vector<Commit> commits(const std::string& sql, const std::vector<SqlValue>& params);
  Commit commit_info(const std::string& ref);
  Commit commit(const std::string& message, const std::string& author, const std::vector<std::string>& add_tables);
  std::vector<std::string> branch_names() { return column_strings(dialect.branches(), {}); }
  std::string active_branch();
  // Makes `name` the active branch (checked to exist), on this and any later connection.
  void checkout(const std::string& name);
  Diff diff(const std::string& from_ref, const std::string& to_ref, const std::string& table, const std::string& where,
            const std::vector<SqlValue>& params);

  // ---- merging (dolt_merge.cc) --------------------------------------------------------------------
  MergeResult merge(const std::string& branch, const std::string& message, const std::string& into);
  // Merges into the active branch, which has no uncommitted changes.
  MergeResult merge_here(const std::string& branch, const std::string& message, const std::string& target);
  // Runs the merge again inside a transaction that is rolled back, to read what conflicts.
  std::vector<TableConflicts> merge_conflicts(const std::vector<SqlValue>& args);

  // ---- reading (dolt_read.cc) ---------------------------------------------------------------------
  std::vector<std::string> primary_key(const std::string& table);
  // The column names of `table` at `hash`. @throws NotFoundError when the table does not exist there
  std::vector<std::string> columns_at(const std::string& table, const std::string& hash);
  void check_columns(const std::string& table, const std::string& hash, const std::vector<std::string>& wanted);
  // Inside a read snapshot: the commit to read `table` at, or "" when `hash` is the unchanged HEAD and
  // reading at a commit would copy the table (the live table then holds exactly its rows).
  std::string live_or(const std::string& table, const std::string& hash);
  Dataset dataset(const DatasetSpec& spec);

  // ---- import (dolt_import.cc) --------------------------------------------------------------------
  Commit import_csv(const std::string& table, const std::string& source, const std::vector<std::string>& pk,
                    const std::string& message, const std::string& mode);
};

#define MLOPS_LOCK std::lock_guard lock_(impl_->mutex)

}  // namespace mlops
