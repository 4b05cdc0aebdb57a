/// @file table.hpp
/// A query result held by column: each column has one type (int64, float64, text or bytes) and a
/// null mask. Values of row i of a column sit at index i of that column's storage.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mlops {

/// The storage type of a column. A column whose non-null values mix integers and reals is Float64; a
/// column that mixes text with numbers is Text (numbers written as text); a column of only NULLs is Null.
enum class ColumnType { Null, Int64, Float64, Text, Bytes };

/// "null", "int64", "float64", "text" or "bytes".
[[nodiscard]] const char* column_type_name(ColumnType t) noexcept;

/// One column of a Table. Exactly one of `ints`, `reals`, `strings` holds the values (by `type`);
/// `null[i]` is 1 when row i is NULL (its slot then holds 0, 0.0 or an empty string).
struct Column {
  std::string name;
  ColumnType type = ColumnType::Null;
  std::vector<std::int64_t> ints;      ///< Int64 values
  std::vector<double> reals;           ///< Float64 values
  std::vector<std::string> strings;    ///< Text (UTF-8) or Bytes values
  std::vector<std::uint8_t> null;      ///< 1 = NULL, one entry per row

  [[nodiscard]] std::size_t size() const noexcept { return null.size(); }
};

/// A columnar query result. Built once, then read.
class Table {
 public:
  Table() = default;
  explicit Table(std::vector<Column> columns);

  [[nodiscard]] std::size_t rows() const noexcept { return rows_; }
  [[nodiscard]] std::size_t cols() const noexcept { return columns_.size(); }
  [[nodiscard]] const std::vector<Column>& columns() const noexcept { return columns_; }
  /// The column named `name`.
  /// @throws NotFoundError when there is none
  [[nodiscard]] const Column& column(std::string_view name) const;
  /// Column names in result order.
  [[nodiscard]] std::vector<std::string> names() const;

 private:
  std::vector<Column> columns_;
  std::size_t rows_ = 0;
};

}  // namespace mlops
