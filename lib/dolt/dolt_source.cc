// DoltSource: opening the source, and the statements it passes through as they are.
#include <cstdio>
#include <filesystem>

#include "core/text.hpp"
#include "dolt/doltlite.hpp"
#include "dolt/mysql.hpp"
#include "dolt/source_impl.hpp"

namespace mlops {

using detail::Backend;
using detail::CellKind;
using detail::quote_for_message;

std::string detail::cell_text(RowReader& r, std::size_t i) {
  switch (r.kind(i)) {
    case CellKind::Null: return "NULL";
    case CellKind::Int: return std::to_string(r.get_int(i));
    case CellKind::Real: {
      char buf[40];
      std::snprintf(buf, sizeof buf, "%.17g", r.get_real(i));
      return buf;
    }
    case CellKind::Text: return quote_for_message(r.get_text(i), 60);
    case CellKind::Blob: return "<" + std::to_string(r.get_blob(i).size()) + " bytes>";
  }
  return "?";
}

void DoltSource::Impl::open() {
  if (parsed.backend == Backend::DoltLite) {
    conn = detail::open_doltlite(lib_path, parsed.path, false);
    return;
  }
  conn = std::make_unique<detail::MySqlConnection>(parsed.mysql);
  // A server without Dolt answers "FUNCTION DOLT_VERSION does not exist".
  try {
    detail::query_scalar(*conn, "SELECT DOLT_VERSION()", {});
    dialect = detail::Dialect(Backend::Dolt);
  } catch (const detail::ConnectionLost&) {
    throw;
  } catch (const DataSourceError&) {
    dialect = detail::Dialect(Backend::MySql);
  }
  if (!parsed.branch.empty()) {
    if (dialect.backend() != Backend::Dolt)
      throw ConfigError(display + " asks for branch " + quote_for_message(parsed.branch) +
                        " but the server is not a Dolt sql-server");
    detail::Dialect::check_ref_name(parsed.branch, "branch");
    conn->follow_branch(parsed.branch);
  }
}

void DoltSource::Impl::require_versioned(const char* op) const {
  if (!dialect.versioned())
    throw DataSourceError(display + " is a MySQL server without Dolt: " + op + " needs version control");
}

std::vector<std::string> DoltSource::Impl::column_strings(const std::string& sql, const std::vector<SqlValue>& params) {
  std::vector<std::string> out;
  auto r = conn->query(sql, params);
  while (r->next()) out.emplace_back(r->kind(0) == CellKind::Null ? std::string() : std::string(r->get_text(0)));
  return out;
}

DoltSource::DoltSource(const std::string& uri, DoltOptions options) : impl_(std::make_unique<Impl>()) {
  if (options.max_retries < 0 || options.connect_timeout_s <= 0 || options.read_timeout_s <= 0 || options.write_timeout_s <= 0)
    throw ConfigError("DoltOptions: timeouts must be positive and max_retries >= 0");
  impl_->opts = options;
  impl_->parsed = detail::parse_source_uri(uri);
  impl_->display = impl_->parsed.display;
  auto& cfg = impl_->parsed.mysql;
  cfg.connect_timeout_s = options.connect_timeout_s;
  cfg.read_timeout_s = options.read_timeout_s;
  cfg.write_timeout_s = options.write_timeout_s;
  if (impl_->parsed.backend == Backend::DoltLite) {
    if (!options.create && !std::filesystem::exists(impl_->parsed.path))
      throw NotFoundError("DoltLite database " + impl_->display +
                          " does not exist (pass create=True to make a new, empty one)");
    impl_->lib_path = detail::find_doltlite_library(options.doltlite_lib);
    impl_->dialect = detail::Dialect(Backend::DoltLite);
  }
  impl_->open();
}

DoltSource::~DoltSource() = default;
DoltSource::DoltSource(DoltSource&&) noexcept = default;
DoltSource& DoltSource::operator=(DoltSource&&) noexcept = default;

const std::string& DoltSource::uri() const noexcept { return impl_->display; }
std::string DoltSource::backend() const { return impl_->dialect.name(); }

std::int64_t DoltSource::execute(const std::string& sql, const std::vector<SqlValue>& params) {
  MLOPS_LOCK;
  impl_->refresh();
  auto n = impl_->conn->execute(sql, params);
  impl_->settle();
  return n;
}

Table DoltSource::query(const std::string& sql, const std::vector<SqlValue>& params, const std::optional<std::string>& at) {
  MLOPS_LOCK;
  if (!at) {
    impl_->refresh();
    auto r = impl_->conn->query(sql, params);
    auto t = detail::read_table(*r);
    r.reset();
    impl_->settle();
    return t;
  }
  impl_->require_versioned("query at a commit");
  return impl_->read([&] {
    auto c = impl_->conn->open_at(impl_->resolve(*at));
    auto r = c->query(sql, params);
    return detail::read_table(*r);
  });
}

}  // namespace mlops
