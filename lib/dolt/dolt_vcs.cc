// DoltSource, version control: refs, commits, branches, tags, and row diffs between commits.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <unordered_set>

#include "core/text.hpp"
#include "dolt/source_impl.hpp"

namespace mlops {

using detail::CellKind;
using detail::cell_text;
using detail::contains;
using detail::quote_for_message;

namespace {

// A key cell, encoded so that equal values from two result sets compare equal.
void encode_cell(std::string& out, detail::RowReader& r, std::size_t i) {
  switch (r.kind(i)) {
    case CellKind::Null: out += "n;"; break;
    case CellKind::Int: out += "i" + std::to_string(r.get_int(i)) + ";"; break;
    case CellKind::Real: {
      const double v = r.get_real(i);
      if (v == std::floor(v) && std::fabs(v) < 9e15) out += "i" + std::to_string(static_cast<std::int64_t>(v)) + ";";
      else {
        char buf[40];
        std::snprintf(buf, sizeof buf, "r%.17g;", v);
        out += buf;
      }
      break;
    }
    case CellKind::Text: {
      auto t = r.get_text(i);
      out += "t" + std::to_string(t.size()) + ":" + std::string(t);
      break;
    }
    case CellKind::Blob: {
      auto t = r.get_blob(i);
      out += "b" + std::to_string(t.size()) + ":" + std::string(t);
      break;
    }
  }
}

}  // namespace

std::string DoltSource::Impl::resolve(const std::string& ref) {
  require_versioned("resolve");
  if (ref.empty()) throw ConfigError("ref is empty");
  if (auto bad = detail::utf8_error(ref)) throw ConfigError("ref " + quote_for_message(ref) + " is not valid UTF-8");
  std::optional<std::string> h;
  try {
    h = detail::query_scalar(*conn, dialect.hashof(), {ref});
  } catch (const detail::ConnectionLost&) {
    throw;
  } catch (const DataSourceError& e) {
    throw NotFoundError("ref " + quote_for_message(ref) + " not found in " + display + " (" + std::string(e.detail()) + ")");
  }
  if (!h || h->empty()) throw NotFoundError("ref " + quote_for_message(ref) + " not found in " + display);
  detail::Dialect::check_hash(*h);
  return *h;
}

std::vector<Commit> DoltSource::Impl::commits(const std::string& sql, const std::vector<SqlValue>& params) {
  std::vector<Commit> out;
  auto r = conn->query(sql, params);
  auto text = [&](std::size_t i) {
    switch (r->kind(i)) {
      case CellKind::Null: return std::string();
      case CellKind::Text: return std::string(r->get_text(i));
      case CellKind::Blob: return std::string(r->get_blob(i));
      default: return cell_text(*r, i);
    }
  };
  while (r->next()) out.push_back(Commit{text(0), text(4), text(1), text(2), text(3)});
  return out;
}

Commit DoltSource::Impl::commit_info(const std::string& ref) {
  const std::string h = resolve(ref);
  auto found = commits(dialect.commit_by_hash(), {h});
  if (found.empty()) return Commit{h, {}, {}, {}, {}};
  return found.front();
}

Commit DoltSource::Impl::commit(const std::string& message, const std::string& author,
                                const std::vector<std::string>& add_tables) {
  require_versioned("commit");
  if (message.empty()) throw ConfigError("commit message is empty");
  refresh();
  std::vector<SqlValue> args;
  if (add_tables.empty()) {
    args = {std::string("-Am"), message};
  } else {
    std::vector<SqlValue> add(add_tables.begin(), add_tables.end());
    conn->execute(dialect.call("add", add.size()), add);
    args = {std::string("-m"), message};
  }
  if (!author.empty()) {
    if (author.find('<') == std::string::npos || author.back() != '>')
      throw ConfigError("commit author must look like 'Name <email>', got " + quote_for_message(author));
    args.emplace_back(std::string("--author"));
    args.emplace_back(author);
  }
  try {
    conn->execute(dialect.call("commit", args.size()), args);
  } catch (const detail::ConnectionLost&) {
    throw;
  } catch (const DataSourceError& e) {
    if (contains(e.what(), "nothing to commit"))
      throw ConflictError("nothing to commit in " + display + ": the working set equals HEAD");
    throw;
  }
  settle();
  auto c = commit_info("HEAD");
  settle();
  return c;
}

Diff DoltSource::Impl::diff(const std::string& from_ref, const std::string& to_ref, const std::string& table,
                            const std::string& where, const std::vector<SqlValue>& params) {
  require_versioned("diff");
  detail::Dialect::check_table(table);
  return read([&]() -> Diff {
    detail::ReadSnapshot snapshot(*conn);
    Diff out;
    out.from_commit = resolve(from_ref);
    out.to_commit = resolve(to_ref);
    out.table = table;
    out.key = primary_key(table);
    const auto& key = out.key;
    if (!where.empty() && key.empty())
      throw DataError("diff of table " + quote_for_message(table) + " with a filter needs a primary key");
    // With a filter, the slice's keys on each side decide the change: in both → modified (if the row
    // changed), only in `to` → added, only in `from` → removed.
    std::unordered_set<std::string> in_from, in_to;
    if (!where.empty()) {
      for (auto [hash, set] : {std::pair{&out.from_commit, &in_from}, std::pair{&out.to_commit, &in_to}}) {
        auto r = conn->query(dialect.select(key, table, live_or(table, *hash), where, {}), params);
        while (r->next()) {
          std::string k;
          for (std::size_t i = 0; i < key.size(); ++i) encode_cell(k, *r, i);
          set->insert(std::move(k));
        }
      }
    }
    auto r = conn->query(dialect.diff(table, out.from_commit, out.to_commit), {});
    std::size_t type_col = r->columns();
    std::vector<std::size_t> keep, from_key, to_key;
    for (std::size_t i = 0; i < r->columns(); ++i) {
      const auto& n = r->name(i);
      if (n == "diff_type") type_col = i;
      else if (n == "from_commit" || n == "to_commit" || n == "from_commit_date" || n == "to_commit_date") continue;
      else if (n.starts_with("from_") || n.starts_with("to_")) keep.push_back(i);
    }
    if (type_col == r->columns()) throw DataSourceError("the diff of " + quote_for_message(table) + " has no diff_type column");
    std::stable_sort(keep.begin(), keep.end(), [&](std::size_t a, std::size_t b) {
      return r->name(a).starts_with("from_") && !r->name(b).starts_with("from_");
    });
    for (const auto& k : key)
      for (std::size_t i = 0; i < r->columns(); ++i) {
        if (r->name(i) == "from_" + k) from_key.push_back(i);
        if (r->name(i) == "to_" + k) to_key.push_back(i);
      }
    std::vector<Column> cols(keep.size() + 1);
    cols[0].name = "diff_type";
    cols[0].type = ColumnType::Text;
    for (std::size_t j = 0; j < keep.size(); ++j) cols[j + 1].name = r->name(keep[j]);
    while (r->next()) {
      std::string type(r->get_text(type_col));
      if (!where.empty()) {
        std::string kf, kt;
        for (auto i : from_key) encode_cell(kf, *r, i);
        for (auto i : to_key) encode_cell(kt, *r, i);
        const bool f = type != "added" && in_from.count(kf) > 0;
        const bool t = type != "removed" && in_to.count(kt) > 0;
        if (f && t) type = "modified";
        else if (t) type = "added";
        else if (f) type = "removed";
        else continue;
      }
      if (type == "added") ++out.added;
      else if (type == "removed") ++out.removed;
      else ++out.modified;
      cols[0].strings.push_back(type);
      cols[0].null.push_back(0);
      for (std::size_t j = 0; j < keep.size(); ++j) detail::append_cell(cols[j + 1], *r, keep[j]);
    }
    r.reset();
    snapshot.end();
    out.rows = Table(std::move(cols));
    return out;
  });
}

Commit DoltSource::head() {
  MLOPS_LOCK;
  return impl_->read([&] { return impl_->commit_info("HEAD"); });
}

std::vector<Commit> DoltSource::log(int limit) {
  MLOPS_LOCK;
  impl_->require_versioned("log");
  if (limit < 1) throw ConfigError("log limit must be at least 1, got " + std::to_string(limit));
  return impl_->read([&] { return impl_->commits(impl_->dialect.log(limit), {}); });
}

std::string DoltSource::resolve(const std::string& ref) {
  MLOPS_LOCK;
  return impl_->read([&] { return impl_->resolve(ref); });
}

Commit DoltSource::commit_info(const std::string& ref) {
  MLOPS_LOCK;
  return impl_->read([&] { return impl_->commit_info(ref); });
}

std::vector<std::string> DoltSource::branches() {
  MLOPS_LOCK;
  impl_->require_versioned("branches");
  return impl_->read([&] { return impl_->branch_names(); });
}

std::string DoltSource::Impl::active_branch() {
  return detail::query_scalar(*conn, dialect.active_branch(), {}).value_or("");
}

std::string DoltSource::active_branch() {
  MLOPS_LOCK;
  impl_->require_versioned("active_branch");
  return impl_->read([&] { return impl_->active_branch(); });
}

void DoltSource::create_branch(const std::string& name, const std::string& start) {
  MLOPS_LOCK;
  impl_->require_versioned("create_branch");
  detail::Dialect::check_ref_name(name, "branch name");
  impl_->refresh();
  const std::string from = impl_->resolve(start);
  auto existing = impl_->branch_names();
  if (std::find(existing.begin(), existing.end(), name) != existing.end())
    throw ConflictError("branch " + quote_for_message(name) + " already exists in " + impl_->display);
  impl_->conn->execute(impl_->dialect.call("branch", 2), {name, from});
  impl_->settle();
}

void DoltSource::Impl::checkout(const std::string& name) {
  detail::Dialect::check_ref_name(name, "branch name");
  auto existing = branch_names();
  if (std::find(existing.begin(), existing.end(), name) == existing.end())
    throw NotFoundError("branch " + quote_for_message(name) + " not found in " + display);
  conn->execute(dialect.call("checkout", 1), {name});
  conn->follow_branch(name);  // a new connection (after a lost one) lands on the same branch
}

void DoltSource::checkout(const std::string& name) {
  MLOPS_LOCK;
  impl_->require_versioned("checkout");
  impl_->refresh();
  impl_->checkout(name);
  impl_->settle();
}

void DoltSource::delete_branch(const std::string& name, bool force) {
  MLOPS_LOCK;
  impl_->require_versioned("delete_branch");
  detail::Dialect::check_ref_name(name, "branch name");
  impl_->refresh();
  auto existing = impl_->branch_names();
  if (std::find(existing.begin(), existing.end(), name) == existing.end())
    throw NotFoundError("branch " + quote_for_message(name) + " not found in " + impl_->display);
  const std::string active = impl_->active_branch();
  if (name == active)
    throw ConflictError("branch " + quote_for_message(name) + " is the active branch of " + impl_->display +
                        ": check out another branch first");
  try {
    impl_->conn->execute(impl_->dialect.call("branch", 2), {std::string(force ? "-D" : "-d"), name});
  } catch (const detail::ConnectionLost&) {
    throw;
  } catch (const DataSourceError& e) {
    if (contains(e.what(), "not fully merged"))
      throw ConflictError("branch " + quote_for_message(name) + " has commits not merged into " +
                          quote_for_message(active) + "; merge it, or delete it with force");
    throw;
  }
  impl_->settle();
}

std::string DoltSource::merge_base(const std::string& a, const std::string& b) {
  MLOPS_LOCK;
  impl_->require_versioned("merge_base");
  return impl_->read([&] {
    const std::string ha = impl_->resolve(a), hb = impl_->resolve(b);
    auto h = detail::query_scalar(*impl_->conn, impl_->dialect.merge_base(), {ha, hb});
    if (!h || h->empty())
      throw DataSourceError(quote_for_message(a) + " and " + quote_for_message(b) + " share no history in " + impl_->display);
    detail::Dialect::check_hash(*h);
    return *h;
  });
}

Commit DoltSource::commit(const std::string& message, const std::string& author) {
  MLOPS_LOCK;
  return impl_->commit(message, author, {});
}

std::vector<std::string> DoltSource::tags() {
  MLOPS_LOCK;
  impl_->require_versioned("tags");
  return impl_->read([&] { return impl_->column_strings(impl_->dialect.tags(), {}); });
}

void DoltSource::create_tag(const std::string& name, const std::string& ref) {
  MLOPS_LOCK;
  impl_->require_versioned("create_tag");
  detail::Dialect::check_ref_name(name, "tag name");
  impl_->refresh();
  const std::string h = impl_->resolve(ref);
  auto existing = impl_->column_strings(impl_->dialect.tags(), {});
  if (std::find(existing.begin(), existing.end(), name) != existing.end())
    throw ConflictError("tag " + quote_for_message(name) + " already exists in " + impl_->display);
  impl_->conn->execute(impl_->dialect.call("tag", 2), {name, h});
  impl_->settle();
}

Diff DoltSource::diff(const std::string& from_ref, const std::string& to_ref, const std::string& table,
                      const std::string& where, const std::vector<SqlValue>& params) {
  MLOPS_LOCK;
  return impl_->diff(from_ref, to_ref, table, where, params);
}

std::vector<std::string> DoltSource::changed_tables(const std::string& from_ref, const std::string& to_ref) {
  MLOPS_LOCK;
  impl_->require_versioned("changed_tables");
  return impl_->read([&] {
    detail::ReadSnapshot snapshot(*impl_->conn);
    const std::string from = impl_->resolve(from_ref), to = impl_->resolve(to_ref);
    std::vector<std::string> out;
    auto r = impl_->conn->query(impl_->dialect.diff_summary(), {from, to});
    while (r->next()) {
      // data_change is 0 for a change of schema only; a table added or dropped changes its rows too.
      if (r->kind(2) == CellKind::Int && r->get_int(2) == 0) continue;
      const std::size_t side = r->kind(1) == CellKind::Null || r->get_text(1).empty() ? 0 : 1;
      out.emplace_back(r->get_text(side));
    }
    r.reset();
    snapshot.end();
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  });
}

}  // namespace mlops
