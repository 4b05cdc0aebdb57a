// DoltSource, merging one branch into another: all of it, or nothing and the conflicts named.
#include <algorithm>

#include "core/text.hpp"
#include "dolt/source_impl.hpp"

namespace mlops {

using detail::CellKind;
using detail::contains;
using detail::quote_for_message;

namespace {

std::string list(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ", ") + i;
  return out;
}

}  // namespace

MergeResult DoltSource::Impl::merge(const std::string& branch, const std::string& message, const std::string& into) {
  require_versioned("merge");
  detail::Dialect::check_ref_name(branch, "branch name");
  if (!into.empty()) detail::Dialect::check_ref_name(into, "branch name");
  refresh();
  const auto existing = branch_names();
  for (const auto* name : {&branch, &into})
    if (!name->empty() && std::find(existing.begin(), existing.end(), *name) == existing.end())
      throw NotFoundError("branch " + quote_for_message(*name) + " not found in " + display);
  const std::string active = active_branch();
  const std::string target = into.empty() ? active : into;
  if (target == branch) throw ConfigError("cannot merge branch " + quote_for_message(branch) + " into itself");
  if (target == active) {
    auto r = merge_here(branch, message, target);
    settle();
    return r;
  }
  // Merge on the target, then return to the branch that was active, whatever happened.
  checkout(target);
  MergeResult r;
  try {
    r = merge_here(branch, message, target);
  } catch (...) {
    try {
      checkout(active);
    } catch (const Error&) {
      // the merge's own error says more
    }
    settle();
    throw;
  }
  checkout(active);
  settle();
  return r;
}

MergeResult DoltSource::Impl::merge_here(const std::string& branch, const std::string& message,
                                         const std::string& target) {
  const auto dirty = column_strings(dialect.status(), {});
  if (!dirty.empty())
    throw ConflictError("branch " + quote_for_message(target) + " of " + display +
                        " has uncommitted changes in " + list(dirty) + ": commit or discard them before merging");
  const std::string before = resolve("HEAD");
  const std::string theirs = resolve(branch);
  const std::vector<SqlValue> args{branch, std::string("-m"),
                                   message.empty() ? "Merge branch '" + branch + "' into " + target : message};
  try {
    conn->execute(dialect.call("merge", args.size()), args);
  } catch (const detail::ConnectionLost&) {
    throw;
  } catch (const DataSourceError& e) {
    if (!contains(e.what(), "onflict")) throw;
    // Both engines roll back a merge with conflicts outside a transaction; see which rows they are.
    auto conflicts = merge_conflicts(args);
    if (resolve("HEAD") != before || !column_strings(dialect.status(), {}).empty())
      throw InternalError("a merge with conflicts changed branch " + quote_for_message(target) + " of " + display);
    std::string what;
    std::size_t shown = 0, total = 0;
    for (const auto& t : conflicts) {
      total += t.keys.size();
      std::vector<std::string> keys;
      for (const auto& k : t.keys)
        if (shown < 20) {
          keys.push_back("(" + k + ")");
          ++shown;
        }
      what += (what.empty() ? "" : "; ") + t.table + ": " + list(keys);
    }
    if (total > shown) what += "; and " + std::to_string(total - shown) + " more";
    const std::string why = "merging " + quote_for_message(branch) + " into " + quote_for_message(target) + " of " +
                            display + " conflicts in " + std::to_string(total) + " row(s), nothing was merged: " +
                            (conflicts.empty() ? std::string(e.detail()) : what);
    throw MergeConflictError(why, std::move(conflicts));
  }
  MergeResult r;
  r.commit = resolve("HEAD");
  r.up_to_date = r.commit == before;
  r.fast_forward = !r.up_to_date && r.commit == theirs;
  return r;
}

std::vector<TableConflicts> DoltSource::Impl::merge_conflicts(const std::vector<SqlValue>& args) {
  std::vector<TableConflicts> out;
  conn->execute(dialect.begin(), {});
  try {
    try {
      conn->execute(dialect.call("merge", args.size()), args);  // DoltLite reports the conflicts as an error
    } catch (const detail::ConnectionLost&) {
      throw;
    } catch (const DataSourceError&) {
    }
    for (const auto& table : column_strings(dialect.conflicts(), {})) {
      TableConflicts t;
      t.table = table;
      const auto key = primary_key(table);
      auto r = conn->query(dialect.conflict_rows(table), {});
      // A key column per side; a row removed on one side has NULL keys there.
      std::vector<std::vector<std::size_t>> sides;
      for (const char* side : {"our_", "their_", "base_"}) {
        std::vector<std::size_t> at;
        for (const auto& k : key)
          for (std::size_t i = 0; i < r->columns(); ++i)
            if (r->name(i) == side + k) at.push_back(i);
        if (!key.empty() && at.size() == key.size()) sides.push_back(std::move(at));
      }
      while (r->next()) {
        for (const auto& at : sides) {
          if (r->kind(at[0]) == CellKind::Null) continue;
          std::string k;
          for (std::size_t i = 0; i < at.size(); ++i) k += (i ? ", " : "") + key[i] + "=" + detail::cell_text(*r, at[i]);
          t.keys.push_back(std::move(k));
          break;
        }
      }
      r.reset();
      out.push_back(std::move(t));
    }
  } catch (...) {
    try {
      conn->execute("ROLLBACK", {});
    } catch (const Error&) {
    }
    throw;
  }
  conn->execute("ROLLBACK", {});
  return out;
}

MergeResult DoltSource::merge(const std::string& branch, const std::string& message, const std::string& into) {
  MLOPS_LOCK;
  return impl_->merge(branch, message, into);
}

}  // namespace mlops
