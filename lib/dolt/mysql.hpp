// A MySQL-protocol connection through libmysqlclient (internal). Prepared statements: values are bound
// and results arrive in the binary protocol, streamed row by row (never buffered whole on the client).
#pragma once

#include <memory>
#include <string>

#include "dolt/connection.hpp"

namespace mlops::detail {

struct MySqlConfig {
  std::string host = "127.0.0.1";
  unsigned port = 3306;
  std::string user;
  std::string password;     // never put in messages
  std::string database;     // may be "db/branch" for Dolt
  std::string unix_socket;
  std::string ssl_mode;     // DISABLED | PREFERRED | REQUIRED | VERIFY_CA | VERIFY_IDENTITY (empty: library default)
  std::string ssl_ca, ssl_cert, ssl_key;
  int connect_timeout_s = 10, read_timeout_s = 600, write_timeout_s = 600;
  std::string display;      // redacted URI, for messages
};

class MySqlConnection : public Connection {
 public:
  /// Connects. @throws DataSourceError (the password never appears in it)
  explicit MySqlConnection(MySqlConfig config);
  ~MySqlConnection() override;
  MySqlConnection(const MySqlConnection&) = delete;
  MySqlConnection& operator=(const MySqlConnection&) = delete;

  std::int64_t execute(const std::string& sql, const std::vector<SqlValue>& params) override;
  std::unique_ptr<RowReader> query(const std::string& sql, const std::vector<SqlValue>& params) override;
  bool reconnect_after_loss() override;
  /// Reconnects to `<database>/<branch>`, the branch's own database on a Dolt sql-server.
  void follow_branch(const std::string& branch) override;
  std::unique_ptr<Connection> open_at(const std::string& hash) const override;
  /// Drops the connection and opens a new one, to `database` when not empty.
  void reconnect(const std::string& database = {});
  /// The server's connection id (for KILL).
  [[nodiscard]] unsigned long thread_id() const;

  struct Handle;

 private:
  MySqlConfig config_;
  std::string base_database_;  // the database named at construction, without a branch
  std::unique_ptr<Handle> h_;
  std::int64_t last_affected_ = 0;
};

}  // namespace mlops::detail
