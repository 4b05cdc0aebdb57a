#include "mlops/table.hpp"

#include <charconv>

#include "core/text.hpp"
#include "dolt/connection.hpp"
#include "mlops/error.hpp"

namespace mlops {

const char* column_type_name(ColumnType t) noexcept {
  switch (t) {
    case ColumnType::Null: return "null";
    case ColumnType::Int64: return "int64";
    case ColumnType::Float64: return "float64";
    case ColumnType::Text: return "text";
    case ColumnType::Bytes: return "bytes";
  }
  return "?";
}

Table::Table(std::vector<Column> columns) : columns_(std::move(columns)) {
  rows_ = columns_.empty() ? 0 : columns_[0].size();
  for (const auto& c : columns_)
    if (c.size() != rows_)
      throw InternalError("table column " + detail::quote_for_message(c.name) + " has " + std::to_string(c.size()) +
                          " rows, expected " + std::to_string(rows_));
}

const Column& Table::column(std::string_view name) const {
  for (const auto& c : columns_)
    if (c.name == name) return c;
  throw NotFoundError("the table has no column " + detail::quote_for_message(name));
}

std::vector<std::string> Table::names() const {
  std::vector<std::string> out;
  for (const auto& c : columns_) out.push_back(c.name);
  return out;
}

namespace detail {

const std::string& EmptyReader::name(std::size_t) const {
  throw InternalError("a statement without a result set has no columns");
}

namespace {

std::string real_text(double v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, ec == std::errc() ? end : buf);
}

// Moves a column to a wider type, converting the values already there.
void promote(Column& c, ColumnType to) {
  if (c.type == to) return;
  const std::size_t n = c.null.size();
  if (to == ColumnType::Float64) {
    c.reals.resize(n);
    if (c.type == ColumnType::Int64)
      for (std::size_t i = 0; i < n; ++i) c.reals[i] = static_cast<double>(c.ints[i]);
    c.ints.clear();
  } else if (to == ColumnType::Text || to == ColumnType::Bytes) {
    c.strings.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      if (c.null[i]) continue;
      if (c.type == ColumnType::Int64) c.strings[i] = std::to_string(c.ints[i]);
      else if (c.type == ColumnType::Float64) c.strings[i] = real_text(c.reals[i]);
    }
    c.ints.clear();
    c.reals.clear();
  } else if (to == ColumnType::Int64) {
    c.ints.resize(n);
  }
  c.type = to;
}

}  // namespace

void append_cell(Column& c, RowReader& r, std::size_t i) {
  const CellKind k = r.kind(i);
  if (k == CellKind::Null) {
    c.null.push_back(1);
    switch (c.type) {
      case ColumnType::Int64: c.ints.push_back(0); break;
      case ColumnType::Float64: c.reals.push_back(0); break;
      case ColumnType::Text: case ColumnType::Bytes: c.strings.emplace_back(); break;
      case ColumnType::Null: break;
    }
    return;
  }
  ColumnType want = k == CellKind::Int ? ColumnType::Int64
                    : k == CellKind::Real ? ColumnType::Float64
                    : k == CellKind::Text ? ColumnType::Text
                                          : ColumnType::Bytes;
  // The widest of the column's type and the cell's: Null < Int64 < Float64 < Text; Bytes stays Bytes
  // only among bytes (anything else mixed with bytes becomes Text).
  ColumnType target = c.type;
  if (c.type == ColumnType::Null) target = want;
  else if (c.type != want) {
    if ((c.type == ColumnType::Int64 && want == ColumnType::Float64) || (c.type == ColumnType::Float64 && want == ColumnType::Int64))
      target = ColumnType::Float64;
    else target = ColumnType::Text;
  }
  promote(c, target);
  c.null.push_back(0);
  switch (target) {
    case ColumnType::Int64: c.ints.push_back(r.get_int(i)); break;
    case ColumnType::Float64: c.reals.push_back(r.get_real(i)); break;
    case ColumnType::Text:
      if (k == CellKind::Int) c.strings.push_back(std::to_string(r.get_int(i)));
      else if (k == CellKind::Real) c.strings.push_back(real_text(r.get_real(i)));
      else if (k == CellKind::Blob) c.strings.emplace_back(r.get_blob(i));
      else c.strings.emplace_back(r.get_text(i));
      break;
    case ColumnType::Bytes: c.strings.emplace_back(r.get_blob(i)); break;
    case ColumnType::Null: break;
  }
}

Table read_table(RowReader& r) {
  std::vector<Column> cols(r.columns());
  for (std::size_t i = 0; i < cols.size(); ++i) cols[i].name = r.name(i);
  while (r.next())
    for (std::size_t i = 0; i < cols.size(); ++i) append_cell(cols[i], r, i);
  return Table(std::move(cols));
}

std::optional<std::string> query_scalar(Connection& c, const std::string& sql, const std::vector<SqlValue>& params) {
  auto r = c.query(sql, params);
  if (!r->next()) return std::nullopt;
  std::optional<std::string> out;
  switch (r->kind(0)) {
    case CellKind::Null: out = std::string(); break;
    case CellKind::Int: out = std::to_string(r->get_int(0)); break;
    case CellKind::Real: out = real_text(r->get_real(0)); break;
    case CellKind::Text: out = std::string(r->get_text(0)); break;
    case CellKind::Blob: out = std::string(r->get_blob(0)); break;
  }
  while (r->next()) {
  }
  return out;
}

ReadSnapshot::ReadSnapshot(Connection& c) : c_(c) {
  if (!c_.snapshot_needs_transaction()) return;
  c_.execute("BEGIN", {});
  open_ = true;
}

ReadSnapshot::~ReadSnapshot() {
  if (!open_) return;
  try {
    c_.execute("ROLLBACK", {});
  } catch (const Error&) {
  }
}

void ReadSnapshot::end() {
  if (!open_) return;
  open_ = false;
  c_.execute("COMMIT", {});
}

}  // namespace detail
}  // namespace mlops
