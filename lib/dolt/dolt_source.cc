#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "core/hash.hpp"
#include "core/text.hpp"
#include "dolt/connection.hpp"
#include "dolt/csv.hpp"
#include "dolt/dialect.hpp"
#include "dolt/doltlite.hpp"
#include "dolt/featurizer.hpp"
#include "dolt/mysql.hpp"
#include "dolt/uri.hpp"
#include "http/http.hpp"
#include "mlops/dolt.hpp"
#include "mlops/error.hpp"

namespace mlops {

using detail::Backend;
using detail::CellKind;
using detail::quote_for_message;

namespace {

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

bool contains(std::string_view hay, std::string_view needle) { return hay.find(needle) != std::string_view::npos; }

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

std::string cell_text(detail::RowReader& r, std::size_t i) {
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

nlohmann::json params_json(const std::vector<SqlValue>& params) {
  auto out = nlohmann::json::array();
  for (const auto& p : params)
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::nullptr_t>) out.push_back(nullptr);
          else if constexpr (std::is_same_v<T, Blob>) out.push_back(nlohmann::json{{"bytes_sha256", detail::sha256_hex(v.bytes)}});
          else out.push_back(v);
        },
        p);
  return out;
}

}  // namespace


struct DoltSource::Impl {
  std::string display;
  DoltOptions opts;
  detail::SourceUri parsed;
  detail::Dialect dialect{Backend::DoltLite};
  std::string lib_path;
  std::unique_ptr<detail::Connection> conn;
  detail::MySqlConnection* my = nullptr;  // conn, when MySQL
  std::string base_database;              // MySQL: the database without a branch
  FileStamp stamp;
  std::mutex mutex;

  // ---- connections --------------------------------------------------------------------------------
  void open() {
    if (parsed.backend == Backend::DoltLite) {
      conn.reset();
      conn = detail::open_doltlite(lib_path, parsed.path, false);
      stamp = stamp_of(parsed.path);
      return;
    }
    auto cfg = parsed.mysql;
    base_database = cfg.database;
    auto c = std::make_unique<detail::MySqlConnection>(cfg);
    my = c.get();
    conn = std::move(c);
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
      my->reconnect(base_database + "/" + parsed.branch);
    }
  }

  // DoltLite: a connection that saw another writer's commit may hold a stale HEAD; reopen then.
  void refresh() {
    if (parsed.backend != Backend::DoltLite) return;
    if (!conn || !(stamp_of(parsed.path) == stamp)) open();
  }
  void settle() {
    if (parsed.backend == Backend::DoltLite) stamp = stamp_of(parsed.path);
  }

  void require_versioned(const char* op) const {
    if (!dialect.versioned())
      throw DataSourceError(display + " is a MySQL server without Dolt: " + op + " needs version control");
  }

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
        if (my == nullptr || attempt >= opts.max_retries)
          throw DataSourceError(std::string(e.detail()) + "; gave up after " + std::to_string(attempt + 1) + " attempts");
        std::this_thread::sleep_for(std::chrono::milliseconds(100 * (attempt + 1)));
        try {
          my->reconnect();
        } catch (const DataSourceError&) {
          // counted as an attempt; the next try reports if it persists
        }
      }
    }
  }

  std::vector<std::string> column_strings(const std::string& sql, const std::vector<SqlValue>& params) {
    std::vector<std::string> out;
    auto r = conn->query(sql, params);
    while (r->next()) out.emplace_back(r->kind(0) == CellKind::Null ? std::string() : std::string(r->get_text(0)));
    return out;
  }

  // ---- version control ----------------------------------------------------------------------------
  std::string resolve(const std::string& ref) {
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

  std::vector<Commit> commits(const std::string& sql, const std::vector<SqlValue>& params) {
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

  Commit commit_info(const std::string& ref) {
    const std::string h = resolve(ref);
    auto found = commits(dialect.commit_by_hash(), {h});
    if (found.empty()) return Commit{h, {}, {}, {}, {}};
    return found.front();
  }

  std::vector<std::string> primary_key(const std::string& table) {
    if (dialect.backend() == Backend::DoltLite) return column_strings(dialect.primary_key(table), {table});
    auto r = conn->query(dialect.primary_key(table), {});
    std::size_t col = r->columns(), seq = r->columns();
    for (std::size_t i = 0; i < r->columns(); ++i) {
      if (r->name(i) == "Column_name") col = i;
      if (r->name(i) == "Seq_in_index") seq = i;
    }
    std::vector<std::pair<std::int64_t, std::string>> keys;
    while (r->next())
      if (col < r->columns()) keys.emplace_back(seq < r->columns() ? r->get_int(seq) : 0, std::string(r->get_text(col)));
    std::sort(keys.begin(), keys.end());
    std::vector<std::string> out;
    for (auto& k : keys) out.push_back(k.second);
    return out;
  }

  // The column names of `table` at `hash`. @throws NotFoundError when the table does not exist there
  std::vector<std::string> columns_at(const std::string& table, const std::string& hash) {
    try {
      auto r = conn->query(dialect.select({}, table, hash, {}, {}) + " LIMIT 0", {});
      std::vector<std::string> out;
      for (std::size_t i = 0; i < r->columns(); ++i) out.push_back(r->name(i));
      while (r->next()) {
      }
      return out;
    } catch (const detail::ConnectionLost&) {
      throw;
    } catch (const DataSourceError& e) {
      throw NotFoundError("table " + quote_for_message(table) + " not found in " + display +
                          (hash.empty() ? std::string() : " at commit " + hash) + " (" + std::string(e.detail()) + ")");
    }
  }

  void check_columns(const std::string& table, const std::string& hash, const std::vector<std::string>& wanted) {
    auto have = columns_at(table, hash);
    for (const auto& w : wanted)
      if (std::find(have.begin(), have.end(), w) == have.end()) {
        std::string list;
        for (const auto& h : have) list += (list.empty() ? "" : ", ") + h;
        throw DataError("table " + quote_for_message(table) + (hash.empty() ? std::string() : " at commit " + hash) +
                        " has no column " + quote_for_message(w) + " (columns: " + list + ")");
      }
  }

  // DoltLite, inside a read transaction: the commit to read `table` at, or "" when `hash` is the
  // unchanged HEAD (the live table then holds exactly its rows and reads without materialising
  // dolt_at_<table>). Other backends read at `hash` itself.
  std::string live_or(const std::string& table, const std::string& hash) {
    if (dialect.backend() != Backend::DoltLite || hash.empty()) return hash;
    if (hash == resolve("HEAD") && !detail::query_scalar(*conn, dialect.table_status(), {table}).has_value())
      return {};
    return hash;
  }

  Dataset dataset(const DatasetSpec& spec);
  Diff diff(const std::string& from_ref, const std::string& to_ref, const std::string& table, const std::string& where,
            const std::vector<SqlValue>& params);
  Commit import_csv(const std::string& table, const std::string& source, const std::vector<std::string>& pk,
                    const std::string& message, const std::string& mode);
  Commit commit(const std::string& message, const std::string& author, const std::vector<std::string>& add_tables);
};

// ---- dataset --------------------------------------------------------------------------------------

namespace {

// X in blocks of rows, mapped straight from the kernel: growing never copies, and each block goes back
// to the system as soon as it is copied into the final array, so the peak stays near one final array
// (std::vector growth would peak at three times, and small heap blocks are not returned at once).
class BlockBuffer {
 public:
  explicit BlockBuffer(std::size_t block_floats) : block_(block_floats) {}
  ~BlockBuffer() {
    for (auto& b : blocks_) release(b);
  }
  BlockBuffer(BlockBuffer&& other) noexcept : block_(other.block_), blocks_(std::move(other.blocks_)) {
    other.blocks_.clear();
  }
  BlockBuffer(const BlockBuffer&) = delete;
  BlockBuffer& operator=(const BlockBuffer&) = delete;
  BlockBuffer& operator=(BlockBuffer&&) = delete;

  float* row(std::size_t width) {
    if (blocks_.empty() || blocks_.back().used + width > blocks_.back().capacity) {
      const std::size_t cap = std::max(block_, width);
      void* p = ::mmap(nullptr, cap * sizeof(float), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw DataError("out of memory while reading a dataset");
      blocks_.push_back({static_cast<float*>(p), cap, 0});
    }
    auto& b = blocks_.back();
    float* p = b.data + b.used;
    b.used += width;
    return p;
  }
  void unrow(std::size_t width) { blocks_.back().used -= width; }
  /// Appends every row to `out` (whose capacity the caller reserved), releasing each block once copied.
  void drain_into(std::vector<float>& out) {
    for (auto& b : blocks_) {
      out.insert(out.end(), b.data, b.data + b.used);
      release(b);
    }
    blocks_.clear();
  }

 private:
  struct Block {
    float* data;
    std::size_t capacity, used;
  };
  static void release(Block& b) {
    if (b.data != nullptr) ::munmap(b.data, b.capacity * sizeof(float));
    b.data = nullptr;
  }
  std::size_t block_;
  std::vector<Block> blocks_;
};

}  // namespace

namespace {

// What one scan of rows needs to know (shared, read-only, by parallel scans).
struct ScanPlan {
  const DatasetSpec* spec;
  std::string hash;  // for messages
  std::vector<std::string> key;
  std::size_t nk = 0, label_at = 0, first_feature = 0, nf = 0;
  bool use_text = false;
  const detail::HashingFeaturizer* featurizer = nullptr;
};

// The rows of one scan: X rows, provisional label ids (local to this scan), dropped rows.
struct ScanResult {
  BlockBuffer xs{std::size_t{1} << 20};
  std::vector<std::int32_t> y;
  std::vector<std::string> label_names;
  std::vector<bool> label_is_int;
  std::unordered_map<std::int64_t, std::int32_t> int_labels;
  std::unordered_map<std::string, std::int32_t> text_labels;
  std::vector<std::size_t> widths;
  std::size_t d = 0;
  bool d_fixed = false;
  std::int64_t dropped = 0;
  std::size_t rows = 0;
};

void scan_rows(detail::RowReader& r, const ScanPlan& p, ScanResult& out) {
  const auto& spec = *p.spec;
  const std::size_t nk = p.nk, label_at = p.label_at, first_feature = p.first_feature, nf = p.nf;
  out.widths.assign(nf, 1);  // BLOB columns: floats per row, fixed by the first row
  out.d = p.use_text ? static_cast<std::size_t>(p.featurizer->dimension()) : nf;
  out.d_fixed = p.use_text;
  std::size_t row_no = 0;
  auto row_key = [&]() {
    std::string k;
    for (std::size_t i = 0; i < nk; ++i) k += (i ? ", " : "") + p.key[i] + "=" + cell_text(r, i);
    return k.empty() ? "row " + std::to_string(row_no) : k;
  };
  auto bad = [&](const std::string& column, const std::string& why) {
    throw DataError("table " + quote_for_message(spec.table) + (p.hash.empty() ? std::string() : " at commit " + p.hash) +
                    ", column " + quote_for_message(column) + ", row " + row_key() + ": " + why +
                    (spec.drop_invalid ? std::string() : " (pass drop_invalid to skip such rows)"));
  };
  while (r.next()) {
    ++row_no;
    // Label first: a row with a bad label is skipped before its features are written.
    std::int32_t label = -1;
    std::string invalid_col, invalid_why;
    switch (r.kind(label_at)) {
      case CellKind::Null: invalid_col = spec.label; invalid_why = "label is NULL"; break;
      case CellKind::Real: {
        const double v = r.get_real(label_at);
        if (v != std::floor(v) || !std::isfinite(v)) bad(spec.label, "label " + cell_text(r, label_at) + " is neither an integer nor text");
        [[fallthrough]];
      }
      case CellKind::Int: {
        const std::int64_t v = r.get_int(label_at);
        auto [it, fresh] = out.int_labels.emplace(v, static_cast<std::int32_t>(out.label_names.size()));
        if (fresh) {
          out.label_names.push_back(std::to_string(v));
          out.label_is_int.push_back(true);
        }
        label = it->second;
        break;
      }
      case CellKind::Text: case CellKind::Blob: {
        std::string v(r.kind(label_at) == CellKind::Text ? r.get_text(label_at) : r.get_blob(label_at));
        auto it = out.text_labels.find(v);
        if (it == out.text_labels.end()) {
          it = out.text_labels.emplace(v, static_cast<std::int32_t>(out.label_names.size())).first;
          out.label_names.push_back(v);
          out.label_is_int.push_back(false);
        }
        label = it->second;
        break;
      }
    }
    if (label < 0) {
      if (spec.drop_invalid) {
        ++out.dropped;
        continue;
      }
      bad(invalid_col, invalid_why);
    }
    if (!out.d_fixed) {
      // The first row fixes the widths of BLOB (float32 embedding) columns.
      out.d = 0;
      for (std::size_t f = 0; f < nf; ++f) {
        if (r.kind(first_feature + f) == CellKind::Blob) {
          const auto b = r.get_blob(first_feature + f);
          if (b.size() % 4 != 0 || b.empty())
            bad(spec.features[f], "a BLOB feature must hold float32 values (a multiple of 4 bytes), got " +
                                      std::to_string(b.size()) + " bytes");
          out.widths[f] = b.size() / 4;
        }
        out.d += out.widths[f];
      }
      out.d_fixed = true;
    }
    const std::size_t d = out.d;
    float* dst = out.xs.row(d);
    bool ok = true;
    if (p.use_text) {
      const auto k = r.kind(first_feature);
      if (k == CellKind::Text) p.featurizer->transform(r.get_text(first_feature), std::span<float>(dst, d));
      else {
        ok = false;
        invalid_col = spec.text;
        invalid_why = k == CellKind::Null ? "text is NULL" : "value " + cell_text(r, first_feature) + " is not text";
      }
    } else {
      float* q = dst;
      for (std::size_t f = 0; f < nf && ok; ++f) {
        const std::size_t c = first_feature + f;
        const std::size_t w = out.widths[f];
        switch (r.kind(c)) {
          case CellKind::Real: {
            const double v = r.get_real(c);
            if (std::isnan(v)) {
              ok = false;
              invalid_why = "feature is NaN";
            }
            *q++ = static_cast<float>(v);
            break;
          }
          case CellKind::Int: *q++ = static_cast<float>(r.get_int(c)); break;
          case CellKind::Null:
            ok = false;
            invalid_why = "feature is NULL";
            break;
          case CellKind::Text:
            ok = false;
            invalid_why = "feature " + cell_text(r, c) + " is not numeric";
            break;
          case CellKind::Blob: {
            const auto b = r.get_blob(c);
            if (b.size() != w * 4) {
              ok = false;
              invalid_why = "BLOB feature has " + std::to_string(b.size()) + " bytes, expected " +
                            std::to_string(w * 4) + " (" + std::to_string(w) + " float32 values)";
              break;
            }
            std::memcpy(q, b.data(), b.size());
            for (std::size_t j = 0; j < w; ++j)
              if (std::isnan(q[j])) {
                ok = false;
                invalid_why = "BLOB feature holds NaN";
              }
            q += w;
            break;
          }
        }
        if (ok && w != 1 && r.kind(c) != CellKind::Blob) {
          ok = false;
          invalid_why = "expected a BLOB of " + std::to_string(w) + " float32 values, got a number";
        }
        if (!ok) invalid_col = spec.features[f];
      }
    }
    if (!ok) {
      out.xs.unrow(d);
      if (spec.drop_invalid) {
        ++out.dropped;
        continue;
      }
      bad(invalid_col, invalid_why);
    }
    out.y.push_back(label);
    ++out.rows;
  }
}

// A DoltLite read transaction: BEGIN now, COMMIT by end(), ROLLBACK if left by an exception.
class LiteSnapshot {
 public:
  explicit LiteSnapshot(detail::Connection& c) : c_(c) { c_.execute("BEGIN", {}); }
  ~LiteSnapshot() {
    if (!open_) return;
    try {
      c_.execute("ROLLBACK", {});
    } catch (const Error&) {
    }
  }
  LiteSnapshot(const LiteSnapshot&) = delete;
  LiteSnapshot& operator=(const LiteSnapshot&) = delete;
  void end() {
    open_ = false;
    c_.execute("COMMIT", {});
  }

 private:
  detail::Connection& c_;
  bool open_ = true;
};

}  // namespace

Dataset DoltSource::Impl::dataset(const DatasetSpec& spec) {
  detail::Dialect::check_table(spec.table);
  if (spec.label.empty()) throw ConfigError("dataset: label column is empty");
  detail::Dialect::check_column(spec.label);
  const bool use_text = !spec.text.empty();
  if (use_text == !spec.features.empty())
    throw ConfigError("dataset of table " + quote_for_message(spec.table) + ": give either features or text, not " +
                      (use_text ? "both" : "neither"));
  for (const auto& f : spec.features) detail::Dialect::check_column(f);
  if (use_text) detail::Dialect::check_column(spec.text);
  std::optional<detail::HashingFeaturizer> featurizer;
  if (use_text) featurizer.emplace(spec.text_dimension, spec.text_seed);
  if (spec.at && !dialect.versioned())
    throw DataSourceError(display + " is a MySQL server without Dolt: it cannot read at " + quote_for_message(*spec.at) +
                          "; pass at=None to read the current rows unpinned");

  return read([&]() -> Dataset {
    // DoltLite: one read transaction, so HEAD, the status and the rows come from one snapshot.
    std::optional<LiteSnapshot> snapshot;
    if (dialect.backend() == Backend::DoltLite) snapshot.emplace(*conn);
    const std::string hash = spec.at ? resolve(*spec.at) : std::string();
    // When the commit is the unchanged HEAD, the live table holds exactly its rows and reads without
    // materialising a historical copy (dolt_at_*). The lineage keeps the pinned query either way.
    const std::string read_hash = live_or(spec.table, hash);
    ScanPlan plan;
    plan.spec = &spec;
    plan.hash = hash;
    plan.key = primary_key(spec.table);
    plan.use_text = use_text;
    plan.featurizer = featurizer ? &*featurizer : nullptr;
    std::vector<std::string> cols = plan.key;
    cols.push_back(spec.label);
    if (use_text) cols.push_back(spec.text);
    else cols.insert(cols.end(), spec.features.begin(), spec.features.end());
    plan.nk = plan.key.size();
    plan.label_at = plan.nk;
    plan.first_feature = plan.nk + 1;
    plan.nf = use_text ? 1 : spec.features.size();
    // Dolt and MySQL return rows in key order only when asked; DoltLite's tables iterate in key order.
    const auto order = dialect.backend() == Backend::DoltLite ? std::vector<std::string>{} : plan.key;
    const std::string sql = dialect.select(cols, spec.table, hash, spec.where, order);
    const std::string run_sql = read_hash == hash ? sql : dialect.select(cols, spec.table, read_hash, spec.where, order);

    std::unique_ptr<detail::RowReader> r;
    try {
      r = conn->query(run_sql, spec.params);
    } catch (const detail::ConnectionLost&) {
      throw;
    } catch (const DataSourceError&) {
      std::vector<std::string> wanted(cols.begin() + static_cast<std::ptrdiff_t>(plan.nk), cols.end());
      check_columns(spec.table, hash, wanted);
      throw;
    }

    std::vector<ScanResult> parts(1);
    scan_rows(*r, plan, parts[0]);
    r.reset();
    if (snapshot) snapshot->end();

    // Merge the scans: one label dictionary, classes in a stable order (integers numerically, then
    // text in byte order), X blocks concatenated in key order.
    std::vector<std::string> names;
    std::vector<bool> is_int;
    std::unordered_map<std::string, std::int32_t> by_name[2];
    std::size_t d = 0, rows = 0;
    bool d_fixed = false;
    std::int64_t dropped = 0;
    std::vector<std::vector<std::int32_t>> to_global(parts.size());
    for (std::size_t t = 0; t < parts.size(); ++t) {
      auto& part = parts[t];
      rows += part.rows;
      dropped += part.dropped;
      if (part.rows > 0) {
        if (d_fixed && part.d != d)
          throw DataError("table " + quote_for_message(spec.table) + ": BLOB feature widths differ between rows (" +
                          std::to_string(d) + " and " + std::to_string(part.d) + " values per row)");
        d = part.d;
        d_fixed = true;
      }
      for (std::size_t i = 0; i < part.label_names.size(); ++i) {
        auto& dict = by_name[part.label_is_int[i] ? 1 : 0];
        auto [it, fresh] = dict.emplace(part.label_names[i], static_cast<std::int32_t>(names.size()));
        if (fresh) {
          names.push_back(part.label_names[i]);
          is_int.push_back(part.label_is_int[i]);
        }
        to_global[t].push_back(it->second);
      }
    }
    if (!d_fixed) d = use_text ? static_cast<std::size_t>(featurizer->dimension()) : plan.nf;
    std::vector<std::int32_t> order_idx(names.size());
    for (std::size_t i = 0; i < order_idx.size(); ++i) order_idx[i] = static_cast<std::int32_t>(i);
    std::sort(order_idx.begin(), order_idx.end(), [&](std::int32_t a, std::int32_t b) {
      if (is_int[a] != is_int[b]) return static_cast<bool>(is_int[a]);
      if (is_int[a]) return std::stoll(names[a]) < std::stoll(names[b]);
      return names[a] < names[b];
    });
    std::vector<std::int32_t> rank(names.size());
    std::vector<std::string> classes;
    for (std::size_t i = 0; i < order_idx.size(); ++i) {
      rank[order_idx[i]] = static_cast<std::int32_t>(i);
      classes.push_back(names[order_idx[i]]);
    }
    std::vector<std::int32_t> y;
    y.reserve(rows);
    for (std::size_t t = 0; t < parts.size(); ++t)
      for (auto v : parts[t].y) y.push_back(rank[to_global[t][v]]);
    std::vector<float> X;
    X.reserve(rows * d);  // pages are touched (counted) only as the blocks are copied in and released
    for (auto& part : parts) part.xs.drain_into(X);
    if (X.size() != rows * d)
      throw InternalError("dataset holds " + std::to_string(X.size()) + " values, expected " + std::to_string(rows * d));

    DatasetLineage lin;
    lin.commit = hash;
    lin.ref = spec.at.value_or("");
    lin.uri = display;
    lin.table = spec.table;
    lin.query = sql;
    lin.params = params_json(spec.params);
    lin.label = spec.label;
    if (use_text) {
      lin.text = spec.text;
      lin.featurizer = featurizer->settings();
    } else {
      lin.features = spec.features;
      lin.featurizer = {{"kind", "columns"}, {"dimension", d}, {"seed", 0}};
    }
    lin.dropped_rows = dropped;
    return Dataset(std::move(X), rows, d, std::move(y), std::move(classes), std::move(lin));
  });
}

// ---- diff -----------------------------------------------------------------------------------------

Diff DoltSource::Impl::diff(const std::string& from_ref, const std::string& to_ref, const std::string& table,
                            const std::string& where, const std::vector<SqlValue>& params) {
  require_versioned("diff");
  detail::Dialect::check_table(table);
  return read([&]() -> Diff {
    std::optional<LiteSnapshot> snapshot;
    if (dialect.backend() == Backend::DoltLite) snapshot.emplace(*conn);
    Diff out;
    out.from_commit = resolve(from_ref);
    out.to_commit = resolve(to_ref);
    out.table = table;
    const auto key = primary_key(table);
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
    if (snapshot) snapshot->end();
    out.rows = Table(std::move(cols));
    return out;
  });
}

// ---- writing --------------------------------------------------------------------------------------

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

Commit DoltSource::Impl::import_csv(const std::string& table, const std::string& source,
                                    const std::vector<std::string>& pk, const std::string& message,
                                    const std::string& mode) {
  require_versioned("import_csv");
  detail::Dialect::check_table(table);
  if (mode != "replace" && mode != "upsert")
    throw ConfigError("import mode must be 'replace' or 'upsert', got " + quote_for_message(mode));
  if (pk.empty()) throw ConfigError("import of " + quote_for_message(table) + " needs a primary key");
  if (message.empty()) throw ConfigError("import of " + quote_for_message(table) + " needs a commit message");
  for (const auto& k : pk) detail::Dialect::check_column(k);

  // Read the whole file first: nothing is written unless every row is valid.
  const auto src = detail::read_csv_source(source);
  const std::string& text = src.text;
  const std::string& what = src.shown;
  const auto csv = detail::parse_csv(text, "CSV " + what);
  for (const auto& h : csv.header) detail::Dialect::check_column(h);
  detail::check_csv_keys(csv, pk, "CSV " + what);

  refresh();
  const bool exists = detail::query_scalar(*conn, dialect.table_exists(), {table}).has_value();
  conn->execute(dialect.begin(), {});
  try {
    if (!exists) {
      std::vector<std::string> types;
      for (char k : csv.kinds) types.push_back(dialect.type_name(k));
      // MySQL cannot key a TEXT column of unbounded length; DoltLite's TEXT is fine.
      conn->execute(dialect.create_table(table, csv.header, types, pk), {});
    } else if (mode == "replace") {
      conn->execute("DELETE FROM " + dialect.table(table), {});
    }
    const std::size_t ncol = csv.header.size();
    const std::size_t batch = std::max<std::size_t>(1, 30000 / std::max<std::size_t>(ncol, 1) / 4);
    for (std::size_t start = 0; start < csv.rows.size(); start += batch) {
      const std::size_t n = std::min(batch, csv.rows.size() - start);
      std::vector<SqlValue> values;
      values.reserve(n * ncol);
      for (std::size_t r = start; r < start + n; ++r)
        for (std::size_t c = 0; c < ncol; ++c) {
          const auto& v = csv.rows[r][c];
          if (!v) values.emplace_back(nullptr);
          else if (csv.kinds[c] == 'i') values.emplace_back(static_cast<std::int64_t>(std::stoll(*v)));
          else if (csv.kinds[c] == 'r') values.emplace_back(std::stod(*v));
          else values.emplace_back(*v);
        }
      try {
        conn->execute(dialect.insert(table, csv.header, true, n), values);
      } catch (const detail::ConnectionLost&) {
        throw;
      } catch (const DataSourceError& e) {
        throw DataError("CSV " + what + ", lines " + std::to_string(csv.lines[start]) + "-" +
                        std::to_string(csv.lines[start + n - 1]) + ": " + std::string(e.detail()));
      }
    }
    conn->execute("COMMIT", {});
  } catch (...) {
    try {
      conn->execute("ROLLBACK", {});
    } catch (const Error&) {
    }
    settle();
    throw;
  }
  settle();
  // A message naming the source (a link with ?token=...) never puts the secret into the history.
  if (detail::query_scalar(*conn, dialect.table_status(), {table}).has_value())
    return commit(src.secrets_removed(message), {}, {table});
  return commit_info("HEAD");
}

// ---- DoltSource -----------------------------------------------------------------------------------

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
      throw NotFoundError("DoltLite database " + impl_->display + " does not exist (and is not created here)");
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

#define MLOPS_LOCK std::lock_guard lock_(impl_->mutex)

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
  return impl_->read([&] { return impl_->column_strings(impl_->dialect.branches(), {}); });
}

std::string DoltSource::active_branch() {
  MLOPS_LOCK;
  impl_->require_versioned("active_branch");
  return impl_->read([&] { return detail::query_scalar(*impl_->conn, impl_->dialect.active_branch(), {}).value_or(""); });
}

void DoltSource::create_branch(const std::string& name, const std::string& start) {
  MLOPS_LOCK;
  impl_->require_versioned("create_branch");
  detail::Dialect::check_ref_name(name, "branch name");
  impl_->refresh();
  const std::string from = impl_->resolve(start);
  auto existing = impl_->column_strings(impl_->dialect.branches(), {});
  if (std::find(existing.begin(), existing.end(), name) != existing.end())
    throw ConflictError("branch " + quote_for_message(name) + " already exists in " + impl_->display);
  impl_->conn->execute(impl_->dialect.call("branch", 2), {name, from});
  impl_->settle();
}

void DoltSource::checkout(const std::string& name) {
  MLOPS_LOCK;
  impl_->require_versioned("checkout");
  detail::Dialect::check_ref_name(name, "branch name");
  impl_->refresh();
  auto existing = impl_->column_strings(impl_->dialect.branches(), {});
  if (std::find(existing.begin(), existing.end(), name) == existing.end())
    throw NotFoundError("branch " + quote_for_message(name) + " not found in " + impl_->display);
  impl_->conn->execute(impl_->dialect.call("checkout", 1), {name});
  if (impl_->my != nullptr) {
    // A new connection (after a lost one) must land on the same branch.
    impl_->parsed.branch = name;
    impl_->my->reconnect(impl_->base_database + "/" + name);
  }
  impl_->settle();
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
    const std::string h = impl_->resolve(*at);
    if (impl_->dialect.backend() == Backend::DoltLite) {
      auto c = detail::open_doltlite(impl_->lib_path, impl_->parsed.path + "@" + h, true);
      auto r = c->query(sql, params);
      return detail::read_table(*r);
    }
    auto cfg = impl_->parsed.mysql;
    cfg.database = impl_->base_database + "/" + h;
    detail::MySqlConnection c(cfg);
    auto r = c.query(sql, params);
    return detail::read_table(*r);
  });
}

Dataset DoltSource::dataset(const DatasetSpec& spec) {
  MLOPS_LOCK;
  return impl_->dataset(spec);
}

std::int64_t DoltSource::count(const std::string& table, const std::string& where, const std::vector<SqlValue>& params,
                               const std::optional<std::string>& at) {
  MLOPS_LOCK;
  detail::Dialect::check_table(table);
  if (at) impl_->require_versioned("count at a commit");
  return impl_->read([&] {
    std::optional<LiteSnapshot> snapshot;
    if (impl_->dialect.backend() == Backend::DoltLite) snapshot.emplace(*impl_->conn);
    const std::string h = at ? impl_->resolve(*at) : std::string();
    std::optional<std::string> v;
    try {
      v = detail::query_scalar(*impl_->conn, impl_->dialect.count(table, impl_->live_or(table, h), where), params);
    } catch (const detail::ConnectionLost&) {
      throw;
    } catch (const DataSourceError&) {
      impl_->columns_at(table, h);  // NotFoundError for a missing table; else the SQL error itself
      throw;
    }
    if (snapshot) snapshot->end();
    return v ? std::stoll(*v) : 0LL;
  });
}

Diff DoltSource::diff(const std::string& from_ref, const std::string& to_ref, const std::string& table,
                      const std::string& where, const std::vector<SqlValue>& params) {
  MLOPS_LOCK;
  return impl_->diff(from_ref, to_ref, table, where, params);
}

Commit DoltSource::import_csv(const std::string& table, const std::string& path_or_url,
                              const std::vector<std::string>& primary_key, const std::string& message,
                              const std::string& mode) {
  MLOPS_LOCK;
  return impl_->import_csv(table, path_or_url, primary_key, message, mode);
}

}  // namespace mlops
