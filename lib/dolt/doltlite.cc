#include "dolt/doltlite.hpp"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cstdlib>
#include <map>
#include <mutex>

#include "core/text.hpp"

namespace mlops {

namespace {
std::mutex g_default_mutex;
std::string g_default_lib;
}  // namespace

void set_default_doltlite_library(const std::string& path) {
  std::lock_guard lock(g_default_mutex);
  g_default_lib = path;
}

namespace detail {

namespace {

// The few sqlite3 constants used here (stable parts of SQLite's C interface).
constexpr int kOk = 0, kRow = 100, kDone = 101;
constexpr int kInteger = 1, kFloat = 2, kText = 3, kBlob = 4;
constexpr int kOpenReadOnly = 0x1, kOpenReadWrite = 0x2, kOpenCreate = 0x4, kOpenNoMutex = 0x8000;
using Destructor = void (*)(void*);
const auto kTransient = reinterpret_cast<Destructor>(-1);  // NOLINT: SQLite's SQLITE_TRANSIENT

struct Db;
struct Stmt;

// The sqlite3_* entry points of one loaded libdoltlite, resolved with dlsym: the library is loaded
// RTLD_LOCAL | RTLD_DEEPBIND so that neither it nor a system SQLite in this process binds to the other.
struct Api {
  int (*open_v2)(const char*, Db**, int, const char*);
  int (*close_v2)(Db*);
  int (*prepare_v2)(Db*, const char*, int, Stmt**, const char**);
  int (*step)(Stmt*);
  int (*finalize)(Stmt*);
  int (*bind_int64)(Stmt*, int, long long);
  int (*bind_double)(Stmt*, int, double);
  int (*bind_text)(Stmt*, int, const char*, int, Destructor);
  int (*bind_blob)(Stmt*, int, const void*, int, Destructor);
  int (*bind_null)(Stmt*, int);
  int (*bind_parameter_count)(Stmt*);
  int (*column_count)(Stmt*);
  const char* (*column_name)(Stmt*, int);
  int (*column_type)(Stmt*, int);
  long long (*column_int64)(Stmt*, int);
  double (*column_double)(Stmt*, int);
  const unsigned char* (*column_text)(Stmt*, int);
  const void* (*column_blob)(Stmt*, int);
  int (*column_bytes)(Stmt*, int);
  const char* (*errmsg)(Db*);
  int (*changes)(Db*);
  int (*busy_timeout)(Db*, int);
};

// The address sanitizer's runtime refuses RTLD_DEEPBIND (it would bypass its malloc). A sanitized build
// loads DoltLite without it, which is safe only while no other SQLite is in the global scope for
// DoltLite's own calls to bind to; load_api checks that and refuses otherwise.
#if defined(__SANITIZE_ADDRESS__)
#define MLOPS_ASAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MLOPS_ASAN_BUILD 1
#endif
#endif
#ifdef MLOPS_ASAN_BUILD
constexpr int kDeepBind = 0;
#else
constexpr int kDeepBind = RTLD_DEEPBIND;
#endif

template <typename F>
void resolve(void* handle, const std::string& path, const char* name, F& fn) {
  void* sym = dlsym(handle, name);
  if (sym == nullptr) throw DataSourceError("libdoltlite at " + path + " lacks the function " + name);
  fn = reinterpret_cast<F>(sym);
}

const Api& load_api(const std::string& path) {
  static std::mutex mutex;
  static std::map<std::string, std::unique_ptr<Api>> loaded;  // never unloaded: statements may outlive users
  std::lock_guard lock(mutex);
  if (auto it = loaded.find(path); it != loaded.end()) return *it->second;
  if constexpr (kDeepBind == 0) {
    if (dlsym(RTLD_DEFAULT, "sqlite3_open_v2") != nullptr)
      throw DataSourceError("cannot load libdoltlite from " + path +
                            " in a sanitized build: another SQLite is already loaded in this process");
  }
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | kDeepBind);
  if (handle == nullptr) {
    const char* why = dlerror();
    throw DataSourceError("cannot load libdoltlite from " + path + ": " + (why ? why : "unknown error"));
  }
  auto api = std::make_unique<Api>();
  resolve(handle, path, "sqlite3_open_v2", api->open_v2);
  resolve(handle, path, "sqlite3_close_v2", api->close_v2);
  resolve(handle, path, "sqlite3_prepare_v2", api->prepare_v2);
  resolve(handle, path, "sqlite3_step", api->step);
  resolve(handle, path, "sqlite3_finalize", api->finalize);
  resolve(handle, path, "sqlite3_bind_int64", api->bind_int64);
  resolve(handle, path, "sqlite3_bind_double", api->bind_double);
  resolve(handle, path, "sqlite3_bind_text", api->bind_text);
  resolve(handle, path, "sqlite3_bind_blob", api->bind_blob);
  resolve(handle, path, "sqlite3_bind_null", api->bind_null);
  resolve(handle, path, "sqlite3_bind_parameter_count", api->bind_parameter_count);
  resolve(handle, path, "sqlite3_column_count", api->column_count);
  resolve(handle, path, "sqlite3_column_name", api->column_name);
  resolve(handle, path, "sqlite3_column_type", api->column_type);
  resolve(handle, path, "sqlite3_column_int64", api->column_int64);
  resolve(handle, path, "sqlite3_column_double", api->column_double);
  resolve(handle, path, "sqlite3_column_text", api->column_text);
  resolve(handle, path, "sqlite3_column_blob", api->column_blob);
  resolve(handle, path, "sqlite3_column_bytes", api->column_bytes);
  resolve(handle, path, "sqlite3_errmsg", api->errmsg);
  resolve(handle, path, "sqlite3_changes", api->changes);
  resolve(handle, path, "sqlite3_busy_timeout", api->busy_timeout);
  return *loaded.emplace(path, std::move(api)).first->second;
}

class LiteReader final : public RowReader {
 public:
  LiteReader(const Api& api, Db* db, Stmt* stmt, std::string sql) : api_(api), db_(db), stmt_(stmt), sql_(std::move(sql)) {
    const int n = api_.column_count(stmt_);
    for (int i = 0; i < n; ++i) {
      const char* nm = api_.column_name(stmt_, i);
      names_.emplace_back(nm ? nm : "");
    }
  }
  ~LiteReader() override { api_.finalize(stmt_); }
  LiteReader(const LiteReader&) = delete;
  LiteReader& operator=(const LiteReader&) = delete;

  std::size_t columns() const override { return names_.size(); }
  const std::string& name(std::size_t i) const override { return names_.at(i); }
  bool next() override {
    if (done_) return false;
    const int rc = api_.step(stmt_);
    if (rc == kRow) return true;
    done_ = true;
    if (rc == kDone) return false;
    throw DataSourceError(std::string("DoltLite: ") + api_.errmsg(db_) + " (in " + quote_for_message(sql_, 200) + ")");
  }
  CellKind kind(std::size_t i) override {
    switch (api_.column_type(stmt_, static_cast<int>(i))) {
      case kInteger: return CellKind::Int;
      case kFloat: return CellKind::Real;
      case kText: return CellKind::Text;
      case kBlob: return CellKind::Blob;
      default: return CellKind::Null;
    }
  }
  std::int64_t get_int(std::size_t i) override { return api_.column_int64(stmt_, static_cast<int>(i)); }
  double get_real(std::size_t i) override { return api_.column_double(stmt_, static_cast<int>(i)); }
  std::string_view get_text(std::size_t i) override {
    const auto* p = reinterpret_cast<const char*>(api_.column_text(stmt_, static_cast<int>(i)));
    const int n = api_.column_bytes(stmt_, static_cast<int>(i));
    return p ? std::string_view(p, static_cast<std::size_t>(n)) : std::string_view();
  }
  std::string_view get_blob(std::size_t i) override {
    const auto* p = static_cast<const char*>(api_.column_blob(stmt_, static_cast<int>(i)));
    const int n = api_.column_bytes(stmt_, static_cast<int>(i));
    return p ? std::string_view(p, static_cast<std::size_t>(n)) : std::string_view();
  }

 private:
  const Api& api_;
  Db* db_;
  Stmt* stmt_;
  std::string sql_;
  std::vector<std::string> names_;
  bool done_ = false;
};

// When the database file last changed, as far as this process can tell.
struct FileStamp {
  std::int64_t mtime_ns = -1, size = -1, ino = -1;
  bool operator==(const FileStamp&) const = default;
};

FileStamp stamp_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return {static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
          static_cast<std::int64_t>(st.st_size), static_cast<std::int64_t>(st.st_ino)};
}

class LiteConnection final : public Connection {
 public:
  LiteConnection(const Api& api, std::string lib_path, std::string name, bool read_only)
      : api_(api), lib_path_(std::move(lib_path)), name_(std::move(name)), read_only_(read_only) {
    open_db();
  }
  ~LiteConnection() override { close_db(); }
  LiteConnection(const LiteConnection&) = delete;
  LiteConnection& operator=(const LiteConnection&) = delete;

  // A connection that saw another writer's commit may hold a stale HEAD: reopen then.
  void refresh() override {
    if (db_ != nullptr && stamp_of(name_) == stamp_) return;
    close_db();
    open_db();
  }
  void settle() override { stamp_ = stamp_of(name_); }
  std::unique_ptr<Connection> open_at(const std::string& hash) const override {
    return std::make_unique<LiteConnection>(api_, lib_path_, name_ + "@" + hash, true);
  }
  bool snapshot_needs_transaction() const override { return true; }

  std::int64_t execute(const std::string& sql, const std::vector<SqlValue>& params) override {
    auto r = query(sql, params);
    while (r->next()) {
    }
    return api_.changes(db_);
  }

  std::unique_ptr<RowReader> query(const std::string& sql, const std::vector<SqlValue>& params) override {
    Stmt* stmt = nullptr;
    const char* tail = nullptr;
    if (api_.prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()), &stmt, &tail) != kOk)
      throw DataSourceError(std::string("DoltLite: ") + api_.errmsg(db_) + " (in " + quote_for_message(sql, 200) + ")");
    if (stmt == nullptr) throw DataSourceError("DoltLite: empty statement " + quote_for_message(sql, 200));
    auto reader = std::make_unique<LiteReader>(api_, db_, stmt, sql);
    if (tail != nullptr) {
      std::string_view rest(tail);
      if (rest.find_first_not_of(" \t\r\n;") != std::string_view::npos)
        throw DataSourceError("DoltLite: one statement at a time, got more after " + quote_for_message(sql, 200));
    }
    const int expected = api_.bind_parameter_count(stmt);
    if (expected != static_cast<int>(params.size()))
      throw DataSourceError("DoltLite: the statement has " + std::to_string(expected) + " placeholders but " +
                            std::to_string(params.size()) + " values were given (in " +
                            quote_for_message(sql, 200) + ")");
    for (std::size_t k = 0; k < params.size(); ++k) {
      const int idx = static_cast<int>(k) + 1;
      int rc = kOk;
      std::visit(
          [&](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::nullptr_t>) rc = api_.bind_null(stmt, idx);
            else if constexpr (std::is_same_v<T, std::int64_t>) rc = api_.bind_int64(stmt, idx, v);
            else if constexpr (std::is_same_v<T, double>) rc = api_.bind_double(stmt, idx, v);
            else if constexpr (std::is_same_v<T, std::string>)
              rc = api_.bind_text(stmt, idx, v.data(), static_cast<int>(v.size()), kTransient);
            else rc = api_.bind_blob(stmt, idx, v.bytes.data(), static_cast<int>(v.bytes.size()), kTransient);
          },
          params[k]);
      if (rc != kOk) throw DataSourceError(std::string("DoltLite: cannot bind value ") + std::to_string(idx) + ": " + api_.errmsg(db_));
    }
    return reader;
  }

 private:
  void open_db() {
    // No per-call locking inside SQLite: a connection is used by one thread at a time (DoltSource
    // serialises its calls), and the lock on every sqlite3_column_* call costs a tenth of a large read.
    const int flags = (read_only_ ? kOpenReadOnly : (kOpenReadWrite | kOpenCreate)) | kOpenNoMutex;
    const int rc = api_.open_v2(name_.c_str(), &db_, flags, nullptr);
    if (rc != kOk) {
      std::string why = db_ ? api_.errmsg(db_) : "out of memory";
      close_db();
      throw DataSourceError("cannot open DoltLite database " + quote_for_message(name_, 300) + ": " + why);
    }
    api_.busy_timeout(db_, 30000);
    // DoltLite's default page cache is 64 MiB per connection; a dataset read is one sequential scan that
    // gains nothing from it (measured), while the cache would add to the read's peak memory.
    try {
      execute("PRAGMA cache_size = -16384", {});
    } catch (...) {
      close_db();
      throw;
    }
    stamp_ = stamp_of(name_);
  }
  void close_db() {
    if (db_) api_.close_v2(db_);
    db_ = nullptr;
  }

  const Api& api_;
  std::string lib_path_;
  std::string name_;
  bool read_only_;
  Db* db_ = nullptr;
  FileStamp stamp_;
};

std::string self_directory() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&find_doltlite_library), &info) == 0 || info.dli_fname == nullptr) return {};
  std::error_code ec;
  auto p = std::filesystem::weakly_canonical(info.dli_fname, ec);
  return ec ? std::string() : p.parent_path().string();
}

}  // namespace

std::string find_doltlite_library(const std::string& explicit_path) {
  auto check = [](const std::string& p, const char* from) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(p, ec))
      throw ConfigError(std::string("libdoltlite given by ") + from + " does not exist: " + quote_for_message(p, 300));
    return p;
  };
  if (!explicit_path.empty()) return check(explicit_path, "DoltOptions::doltlite_lib");
  if (const char* env = std::getenv("DOLTLITE_LIB"); env != nullptr && *env != '\0') return check(env, "DOLTLITE_LIB");
  {
    std::lock_guard lock(g_default_mutex);
    if (!g_default_lib.empty()) return check(g_default_lib, "the default DoltLite library");
  }
  if (auto dir = self_directory(); !dir.empty()) {
    for (const auto& cand : {std::filesystem::path(dir) / "libdoltlite.so",
                             std::filesystem::path(dir) / ".." / "doltlite" / "_lib" / "libdoltlite.so"}) {
      std::error_code ec;
      if (std::filesystem::is_regular_file(cand, ec)) return cand.lexically_normal().string();
    }
  }
  throw ConfigError(
      "libdoltlite.so not found: set DOLTLITE_LIB to its path, or install the Python package 'doltlite' "
      "(the mlops Python package finds it there)");
}

std::unique_ptr<Connection> open_doltlite(const std::string& lib_path, const std::string& name, bool read_only) {
  return std::make_unique<LiteConnection>(load_api(lib_path), lib_path, name, read_only);
}

}  // namespace detail
}  // namespace mlops
