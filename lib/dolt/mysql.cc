#include "dolt/mysql.hpp"

#include <errmsg.h>
#include <mysql.h>

#include <charconv>
#include <cstring>
#include <mutex>

#include "core/text.hpp"

namespace mlops::detail {

namespace {

bool is_lost(unsigned err) {
  return err == CR_SERVER_GONE_ERROR || err == CR_SERVER_LOST || err == 2055 /* lost, extended */ ||
         err == 1927 /* ER_CONNECTION_KILLED */ || err == 1053 /* ER_SERVER_SHUTDOWN */;
}

std::string scrub(std::string msg, const std::string& secret) {
  if (secret.empty()) return msg;
  for (auto pos = msg.find(secret); pos != std::string::npos; pos = msg.find(secret, pos + 3))
    msg.replace(pos, secret.size(), "***");
  return msg;
}

void init_library() {
  static std::once_flag once;
  std::call_once(once, [] { mysql_library_init(0, nullptr, nullptr); });
}

}  // namespace

struct MySqlConnection::Handle {
  MYSQL* db = nullptr;
  ~Handle() {
    if (db) mysql_close(db);
  }
};

namespace {

[[noreturn]] void fail(const MySqlConfig& cfg, unsigned err, const char* what, const std::string& context) {
  std::string msg = "MySQL server " + cfg.display + ": " + scrub(what ? what : "unknown error", cfg.password) +
                    " (error " + std::to_string(err) + ")";
  if (!context.empty()) msg += " in " + quote_for_message(context, 200);
  if (is_lost(err)) throw ConnectionLost(msg);
  throw DataSourceError(msg);
}

struct ColumnBuf {
  CellKind kind = CellKind::Null;
  bool decimal = false;  // DECIMAL sent as text, reported as Real
  std::int64_t i = 0;
  double d = 0;
  std::string s;  // text/blob buffer (capacity grows)
  unsigned long length = 0;
  my_bool is_null = 0;
  my_bool error = 0;
};

class MyReader final : public RowReader {
 public:
  MyReader(const MySqlConfig& cfg, MYSQL_STMT* stmt, MYSQL_RES* meta, std::string sql)
      : cfg_(cfg), stmt_(stmt), meta_(meta), sql_(std::move(sql)) {
    const unsigned n = mysql_num_fields(meta_);
    MYSQL_FIELD* fields = mysql_fetch_fields(meta_);
    cols_.resize(n);
    binds_.resize(n);
    std::memset(binds_.data(), 0, sizeof(MYSQL_BIND) * n);
    for (unsigned k = 0; k < n; ++k) {
      names_.emplace_back(fields[k].name ? fields[k].name : "");
      auto& c = cols_[k];
      auto& b = binds_[k];
      b.is_null = &c.is_null;
      b.error = &c.error;
      b.length = &c.length;
      const bool binary = fields[k].charsetnr == 63;
      switch (fields[k].type) {
        case MYSQL_TYPE_TINY: case MYSQL_TYPE_SHORT: case MYSQL_TYPE_INT24: case MYSQL_TYPE_LONG:
        case MYSQL_TYPE_LONGLONG: case MYSQL_TYPE_YEAR: case MYSQL_TYPE_BIT:
          c.kind = CellKind::Int;
          b.buffer_type = MYSQL_TYPE_LONGLONG;
          b.buffer = &c.i;
          b.is_unsigned = (fields[k].flags & UNSIGNED_FLAG) ? 1 : 0;
          break;
        case MYSQL_TYPE_FLOAT: case MYSQL_TYPE_DOUBLE:
          c.kind = CellKind::Real;
          b.buffer_type = MYSQL_TYPE_DOUBLE;
          b.buffer = &c.d;
          break;
        case MYSQL_TYPE_NULL:
          c.kind = CellKind::Null;
          b.buffer_type = MYSQL_TYPE_NULL;
          break;
        default: {
          const bool blobish = fields[k].type == MYSQL_TYPE_BLOB || fields[k].type == MYSQL_TYPE_TINY_BLOB ||
                               fields[k].type == MYSQL_TYPE_MEDIUM_BLOB || fields[k].type == MYSQL_TYPE_LONG_BLOB ||
                               fields[k].type == MYSQL_TYPE_STRING || fields[k].type == MYSQL_TYPE_VAR_STRING ||
                               fields[k].type == MYSQL_TYPE_VARCHAR;
          c.decimal = fields[k].type == MYSQL_TYPE_DECIMAL || fields[k].type == MYSQL_TYPE_NEWDECIMAL;
          c.kind = c.decimal ? CellKind::Real : (binary && blobish ? CellKind::Blob : CellKind::Text);
          c.s.resize(64);
          b.buffer_type = c.kind == CellKind::Blob ? MYSQL_TYPE_BLOB : MYSQL_TYPE_STRING;
          b.buffer = c.s.data();
          b.buffer_length = c.s.size();
        }
      }
    }
    if (mysql_stmt_bind_result(stmt_, binds_.data()) != 0)
      fail(cfg_, mysql_stmt_errno(stmt_), mysql_stmt_error(stmt_), sql_);
  }
  ~MyReader() override {
    mysql_free_result(meta_);
    mysql_stmt_close(stmt_);
  }
  MyReader(const MyReader&) = delete;
  MyReader& operator=(const MyReader&) = delete;

  std::size_t columns() const override { return names_.size(); }
  const std::string& name(std::size_t i) const override { return names_.at(i); }

  bool next() override {
    if (done_) return false;
    const int rc = mysql_stmt_fetch(stmt_);
    if (rc == MYSQL_NO_DATA) {
      done_ = true;
      return false;
    }
    if (rc == 1) {
      done_ = true;
      fail(cfg_, mysql_stmt_errno(stmt_), mysql_stmt_error(stmt_), sql_);
    }
    if (rc == MYSQL_DATA_TRUNCATED) {
      bool rebind = false;
      for (unsigned k = 0; k < cols_.size(); ++k) {
        auto& c = cols_[k];
        if (!c.error || binds_[k].buffer_type == MYSQL_TYPE_LONGLONG || binds_[k].buffer_type == MYSQL_TYPE_DOUBLE) continue;
        if (c.length <= c.s.size()) continue;
        c.s.resize(std::max<std::size_t>(c.length, c.s.size() * 2));
        binds_[k].buffer = c.s.data();
        binds_[k].buffer_length = c.s.size();
        if (mysql_stmt_fetch_column(stmt_, &binds_[k], k, 0) != 0)
          fail(cfg_, mysql_stmt_errno(stmt_), mysql_stmt_error(stmt_), sql_);
        rebind = true;
      }
      if (rebind && mysql_stmt_bind_result(stmt_, binds_.data()) != 0)
        fail(cfg_, mysql_stmt_errno(stmt_), mysql_stmt_error(stmt_), sql_);
    }
    for (auto& c : cols_)
      if (c.decimal && !c.is_null) {
        const char* p = c.s.data();
        auto [end, ec] = std::from_chars(p, p + c.length, c.d);
        if (ec != std::errc() || end != p + c.length) c.d = std::strtod(std::string(p, c.length).c_str(), nullptr);
      }
    return true;
  }
  CellKind kind(std::size_t i) override { return cols_[i].is_null ? CellKind::Null : cols_[i].kind; }
  std::int64_t get_int(std::size_t i) override {
    const auto& c = cols_[i];
    return c.kind == CellKind::Real ? static_cast<std::int64_t>(c.d) : c.i;
  }
  double get_real(std::size_t i) override {
    const auto& c = cols_[i];
    return c.kind == CellKind::Int ? static_cast<double>(c.i) : c.d;
  }
  std::string_view get_text(std::size_t i) override { return {cols_[i].s.data(), cols_[i].length}; }
  std::string_view get_blob(std::size_t i) override { return {cols_[i].s.data(), cols_[i].length}; }

 private:
  const MySqlConfig& cfg_;
  MYSQL_STMT* stmt_;
  MYSQL_RES* meta_;
  std::string sql_;
  std::vector<std::string> names_;
  std::vector<ColumnBuf> cols_;
  std::vector<MYSQL_BIND> binds_;
  bool done_ = false;
};

}  // namespace

MySqlConnection::MySqlConnection(MySqlConfig config) : config_(std::move(config)), base_database_(config_.database) {
  reconnect();
}

bool MySqlConnection::reconnect_after_loss() {
  try {
    reconnect();
  } catch (const DataSourceError&) {
    // counted as an attempt by the caller; the next try reports if it persists
  }
  return true;
}

void MySqlConnection::follow_branch(const std::string& branch) { reconnect(base_database_ + "/" + branch); }

std::unique_ptr<Connection> MySqlConnection::open_at(const std::string& hash) const {
  auto cfg = config_;
  cfg.database = base_database_ + "/" + hash;
  return std::make_unique<MySqlConnection>(std::move(cfg));
}

MySqlConnection::~MySqlConnection() = default;

void MySqlConnection::reconnect(const std::string& database) {
  init_library();
  if (!database.empty()) config_.database = database;
  h_.reset();
  auto h = std::make_unique<Handle>();
  h->db = mysql_init(nullptr);
  if (h->db == nullptr) throw DataSourceError("MySQL server " + config_.display + ": out of memory");
  auto set_uint = [&](mysql_option opt, int v) {
    unsigned int u = static_cast<unsigned>(v);
    mysql_options(h->db, opt, &u);
  };
  set_uint(MYSQL_OPT_CONNECT_TIMEOUT, config_.connect_timeout_s);
  set_uint(MYSQL_OPT_READ_TIMEOUT, config_.read_timeout_s);
  set_uint(MYSQL_OPT_WRITE_TIMEOUT, config_.write_timeout_s);
  mysql_options(h->db, MYSQL_SET_CHARSET_NAME, "utf8mb4");
  if (!config_.ssl_mode.empty()) {
    const std::string& m = config_.ssl_mode;
    my_bool on = 1, off = 0;
    if (m == "DISABLED") {
      mysql_options(h->db, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &off);
    } else if (m == "PREFERRED") {
      mysql_options(h->db, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &off);
    } else if (m == "REQUIRED") {
      mysql_ssl_set(h->db, nullptr, nullptr, nullptr, nullptr, nullptr);  // turns TLS on
      mysql_options(h->db, MYSQL_OPT_SSL_ENFORCE, &on);
      mysql_options(h->db, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &off);
    } else if (m == "VERIFY_CA" || m == "VERIFY_IDENTITY") {
      mysql_ssl_set(h->db, nullptr, nullptr, nullptr, nullptr, nullptr);
      mysql_options(h->db, MYSQL_OPT_SSL_ENFORCE, &on);
      mysql_options(h->db, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &on);
    }
  }
  // After ssl-mode: mysql_ssl_set() there resets these.
  if (!config_.ssl_ca.empty()) mysql_options(h->db, MYSQL_OPT_SSL_CA, config_.ssl_ca.c_str());
  if (!config_.ssl_cert.empty()) mysql_options(h->db, MYSQL_OPT_SSL_CERT, config_.ssl_cert.c_str());
  if (!config_.ssl_key.empty()) mysql_options(h->db, MYSQL_OPT_SSL_KEY, config_.ssl_key.c_str());
  const char* socket = config_.unix_socket.empty() ? nullptr : config_.unix_socket.c_str();
  if (mysql_real_connect(h->db, socket ? nullptr : config_.host.c_str(), config_.user.c_str(),
                         config_.password.empty() ? nullptr : config_.password.c_str(),
                         config_.database.empty() ? nullptr : config_.database.c_str(), config_.port, socket,
                         0) == nullptr) {
    const unsigned err = mysql_errno(h->db);
    std::string msg = "cannot connect to MySQL server " + config_.display + ": " +
                      scrub(mysql_error(h->db), config_.password) + " (error " + std::to_string(err) + ")";
    throw DataSourceError(msg);
  }
  // Some client libraries turn TLS on without insisting on it; insist here.
  const std::string& m = config_.ssl_mode;
  if ((m == "REQUIRED" || m == "VERIFY_CA" || m == "VERIFY_IDENTITY") && mysql_get_ssl_cipher(h->db) == nullptr)
    throw DataSourceError("cannot connect to MySQL server " + config_.display + ": ssl-mode=" + m +
                          " but the connection is not encrypted (the server does not offer TLS/SSL)");
  h_ = std::move(h);
}

unsigned long MySqlConnection::thread_id() const { return h_ ? mysql_thread_id(h_->db) : 0; }

std::unique_ptr<RowReader> MySqlConnection::query(const std::string& sql, const std::vector<SqlValue>& params) {
  // A connection that was lost stays unusable: the next statement gets a new one (a write is never
  // repeated here; only the caller knows whether that is safe).
  if (!h_ || is_lost(mysql_errno(h_->db))) reconnect();
  MYSQL_STMT* stmt = mysql_stmt_init(h_->db);
  if (stmt == nullptr) fail(config_, mysql_errno(h_->db), mysql_error(h_->db), sql);
  struct Guard {
    MYSQL_STMT* s;
    ~Guard() { if (s) mysql_stmt_close(s); }
  } guard{stmt};
  if (mysql_stmt_prepare(stmt, sql.data(), sql.size()) != 0) fail(config_, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), sql);
  const unsigned long expected = mysql_stmt_param_count(stmt);
  if (expected != params.size())
    throw DataSourceError("MySQL: the statement has " + std::to_string(expected) + " placeholders but " +
                          std::to_string(params.size()) + " values were given (in " + quote_for_message(sql, 200) + ")");
  std::vector<MYSQL_BIND> binds(params.size());
  std::vector<unsigned long> lengths(params.size());
  if (!binds.empty()) std::memset(binds.data(), 0, sizeof(MYSQL_BIND) * binds.size());
  for (std::size_t k = 0; k < params.size(); ++k) {
    auto& b = binds[k];
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::nullptr_t>) {
            b.buffer_type = MYSQL_TYPE_NULL;
          } else if constexpr (std::is_same_v<T, std::int64_t>) {
            b.buffer_type = MYSQL_TYPE_LONGLONG;
            b.buffer = const_cast<std::int64_t*>(&v);
          } else if constexpr (std::is_same_v<T, double>) {
            b.buffer_type = MYSQL_TYPE_DOUBLE;
            b.buffer = const_cast<double*>(&v);
          } else if constexpr (std::is_same_v<T, std::string>) {
            b.buffer_type = MYSQL_TYPE_STRING;
            b.buffer = const_cast<char*>(v.data());
            lengths[k] = v.size();
            b.buffer_length = v.size();
            b.length = &lengths[k];
          } else {
            b.buffer_type = MYSQL_TYPE_BLOB;
            b.buffer = const_cast<char*>(v.bytes.data());
            lengths[k] = v.bytes.size();
            b.buffer_length = v.bytes.size();
            b.length = &lengths[k];
          }
        },
        params[k]);
  }
  if (!binds.empty() && mysql_stmt_bind_param(stmt, binds.data()) != 0)
    fail(config_, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), sql);
  if (mysql_stmt_execute(stmt) != 0) fail(config_, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), sql);
  MYSQL_RES* meta = mysql_stmt_result_metadata(stmt);
  if (meta == nullptr) {
    if (mysql_stmt_errno(stmt) != 0) fail(config_, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), sql);
    last_affected_ = static_cast<std::int64_t>(mysql_stmt_affected_rows(stmt));
    return std::make_unique<EmptyReader>();
  }
  guard.s = nullptr;
  return std::make_unique<MyReader>(config_, stmt, meta, sql);
}

std::int64_t MySqlConnection::execute(const std::string& sql, const std::vector<SqlValue>& params) {
  last_affected_ = 0;
  auto r = query(sql, params);
  while (r->next()) {
  }
  return last_affected_;
}

}  // namespace mlops::detail
