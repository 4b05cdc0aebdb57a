// The SQL connection behind DoltSource: one interface, a DoltLite and a MySQL implementation (internal).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mlops/dolt.hpp"
#include "mlops/error.hpp"

namespace mlops::detail {

/// The connection to the server went away (a read may be retried; it is pinned, so idempotent).
class ConnectionLost : public DataSourceError {
 public:
  using DataSourceError::DataSourceError;
};

enum class CellKind { Null, Int, Real, Text, Blob };

/// A result being streamed, one row at a time. Values are valid until the next call to next().
class RowReader {
 public:
  virtual ~RowReader() = default;
  [[nodiscard]] virtual std::size_t columns() const = 0;
  [[nodiscard]] virtual const std::string& name(std::size_t i) const = 0;
  /// Advances to the next row; false at the end. @throws DataSourceError / ConnectionLost
  virtual bool next() = 0;
  virtual CellKind kind(std::size_t i) = 0;
  virtual std::int64_t get_int(std::size_t i) = 0;
  virtual double get_real(std::size_t i) = 0;
  virtual std::string_view get_text(std::size_t i) = 0;
  virtual std::string_view get_blob(std::size_t i) = 0;
};

/// The reader of a statement that returned no result set.
class EmptyReader final : public RowReader {
 public:
  std::size_t columns() const override { return 0; }
  const std::string& name(std::size_t) const override;
  bool next() override { return false; }
  CellKind kind(std::size_t) override { return CellKind::Null; }
  std::int64_t get_int(std::size_t) override { return 0; }
  double get_real(std::size_t) override { return 0; }
  std::string_view get_text(std::size_t) override { return {}; }
  std::string_view get_blob(std::size_t) override { return {}; }
};

class Connection {
 public:
  virtual ~Connection() = default;
  /// Runs a statement; returns the affected rows. Any result rows are discarded.
  virtual std::int64_t execute(const std::string& sql, const std::vector<SqlValue>& params) = 0;
  /// Starts a query; the reader must be destroyed before the next call on this connection.
  virtual std::unique_ptr<RowReader> query(const std::string& sql, const std::vector<SqlValue>& params) = 0;

  /// Between statements: catches up when another writer may have moved HEAD under this connection
  /// (DoltLite keeps the HEAD it saw; it reopens when the file changed since settle()).
  virtual void refresh() {}
  /// Notes the database as this connection last wrote or saw it, so refresh() reopens only for others.
  virtual void settle() {}
  /// After ConnectionLost: opens a new connection. False when this kind cannot reconnect; a failed
  /// attempt is not an error here (the next statement reports it).
  virtual bool reconnect_after_loss() { return false; }
  /// Keeps this connection, and any later reconnection, on `branch` (a server with a branch per
  /// connection; the embedded database switches with the checkout itself).
  virtual void follow_branch(const std::string& /*branch*/) {}
  /// A new, read-only connection to the database as it was at commit `hash` (already validated).
  [[nodiscard]] virtual std::unique_ptr<Connection> open_at(const std::string& hash) const = 0;
  /// Whether statements see one snapshot only inside an explicit transaction (DoltLite); a server read
  /// pins every statement to a commit hash instead.
  [[nodiscard]] virtual bool snapshot_needs_transaction() const { return false; }
};

/// Several reads that must see one snapshot: begins a transaction where the connection needs one,
/// commits at end(), rolls back when left by an exception.
class ReadSnapshot {
 public:
  explicit ReadSnapshot(Connection& c);
  ~ReadSnapshot();
  ReadSnapshot(const ReadSnapshot&) = delete;
  ReadSnapshot& operator=(const ReadSnapshot&) = delete;
  void end();

 private:
  Connection& c_;
  bool open_ = false;
};

/// Appends the cell `i` of the reader's current row to `c`, widening the column's type when needed.
void append_cell(Column& c, RowReader& r, std::size_t i);

/// Reads a whole result into a Table.
Table read_table(RowReader& r);

/// The first column of the first row as text ("" for NULL); nullopt when there is no row.
std::optional<std::string> query_scalar(Connection& c, const std::string& sql, const std::vector<SqlValue>& params);

}  // namespace mlops::detail
