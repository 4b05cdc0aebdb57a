// DoltSource, reading: datasets (rows → X, y in one streamed scan; many slices of a table in one scan),
// counts, table shapes.
#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>
#include <unordered_map>

#include "core/hash.hpp"
#include "core/text.hpp"
#include "dolt/source_impl.hpp"
#include "mlops/featurizer.hpp"

namespace mlops {

using detail::CellKind;
using detail::cell_text;
using detail::quote_for_message;

namespace {

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

// What the scan of rows needs to know.
struct ScanPlan {
  const DatasetSpec* spec;
  std::string hash;  // for messages
  std::vector<std::string> key;
  std::size_t nk = 0, label_at = 0, first_feature = 0, nf = 0;
  bool use_text = false;
  const Featurizer* featurizer = nullptr;
};

// The rows of one dataset: X rows, label ids in order of first appearance, dropped rows.
struct ScanResult {
  // `block_floats`: X grows in blocks of this many floats (smaller for the many slices of one scan).
  ScanResult(const ScanPlan& p, std::size_t block_floats) : xs(block_floats), widths(p.nf, 1) {
    d = p.use_text ? static_cast<std::size_t>(p.featurizer->dimension()) : p.nf;
    d_fixed = p.use_text;
  }
  BlockBuffer xs;
  std::vector<std::int32_t> y;
  std::vector<std::string> label_names;
  std::vector<bool> label_is_int;
  std::unordered_map<std::int64_t, std::int32_t> int_labels;
  std::unordered_map<std::string, std::int32_t> text_labels;
  std::vector<std::size_t> widths;  // BLOB columns: floats per row, fixed by the first row
  std::size_t d = 0;
  bool d_fixed = false;
  std::int64_t dropped = 0;
  std::size_t rows = 0;
};

// Reads every row of `r` into the ScanResult `route(r)` names (nullptr: a row no dataset wants).
template <class Route>
void scan_rows(detail::RowReader& r, const ScanPlan& p, Route&& route) {
  const auto& spec = *p.spec;
  const std::size_t nk = p.nk, label_at = p.label_at, first_feature = p.first_feature, nf = p.nf;
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
    ScanResult* routed = route(r);
    if (routed == nullptr) continue;
    ScanResult& out = *routed;
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

// The Dataset of one scan: classes in a stable order, X moved out of the blocks, the lineage naming
// `sql` with `params` as the query that reads these rows at the pinned commit.
Dataset finish(ScanResult& scan, const ScanPlan& plan, const std::string& sql, const std::vector<SqlValue>& params,
               const std::string& uri, nlohmann::json holdout) {
  const DatasetSpec& spec = *plan.spec;
  const bool use_text = plan.use_text;
  // Classes in a stable order: integers numerically, then text in byte order.
  const auto& names = scan.label_names;
  const auto& is_int = scan.label_is_int;
  const std::size_t rows = scan.rows;
  const std::size_t d = scan.rows > 0 ? scan.d : use_text ? static_cast<std::size_t>(plan.featurizer->dimension()) : plan.nf;
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
  for (auto v : scan.y) y.push_back(rank[v]);
  std::vector<float> X;
  X.reserve(rows * d);  // pages are touched (counted) only as the blocks are copied in and released
  scan.xs.drain_into(X);
  if (X.size() != rows * d)
    throw InternalError("dataset holds " + std::to_string(X.size()) + " values, expected " + std::to_string(rows * d));

  DatasetLineage lin;
  lin.commit = plan.hash;
  lin.ref = spec.at.value_or("");
  lin.uri = uri;
  lin.table = spec.table;
  lin.query = sql;
  lin.params = params_json(params);
  lin.label = spec.label;
  if (use_text) {
    lin.text = spec.text;
    lin.featurizer = plan.featurizer->settings();
  } else {
    lin.features = spec.features;
    lin.featurizer = {{"kind", "columns"}, {"dimension", d}, {"seed", 0}};
  }
  lin.dropped_rows = scan.dropped;
  lin.holdout = std::move(holdout);
  std::vector<std::int32_t>().swap(scan.y);  // the scan's own copy goes now, not with the last slice
  return Dataset(std::move(X), rows, d, std::move(y), std::move(classes), std::move(lin));
}

}  // namespace

std::vector<std::string> DoltSource::Impl::primary_key(const std::string& table) {
  try {
    auto r = conn->query(dialect.primary_key(table), {});
    return detail::key_columns(*r);
  } catch (const detail::ConnectionLost&) {
    throw;
  } catch (const DataSourceError&) {
    // A MySQL server refuses SHOW KEYS of a missing table: say NotFoundError as DoltLite's path does.
    (void)columns_at(table, "");
    throw;
  }
}

std::vector<std::string> DoltSource::Impl::columns_at(const std::string& table, const std::string& hash) {
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

void DoltSource::Impl::check_columns(const std::string& table, const std::string& hash, const std::vector<std::string>& wanted) {
  auto have = columns_at(table, hash);
  for (const auto& w : wanted)
    if (std::find(have.begin(), have.end(), w) == have.end()) {
      std::string list;
      for (const auto& h : have) list += (list.empty() ? "" : ", ") + h;
      throw DataError("table " + quote_for_message(table) + (hash.empty() ? std::string() : " at commit " + hash) +
                      " has no column " + quote_for_message(w) + " (columns: " + list + ")");
    }
}

std::string DoltSource::Impl::live_or(const std::string& table, const std::string& hash) {
  if (!dialect.history_read_copies() || hash.empty()) return hash;
  if (hash == resolve("HEAD") && !detail::query_scalar(*conn, dialect.table_status(), {table}).has_value())
    return {};
  return hash;
}

namespace {

// The checks of a read's spec made before touching the source; returns a text dataset's featurizer.
std::optional<Featurizer> checked(const DatasetSpec& spec, const DoltSource::Impl& impl) {
  detail::Dialect::check_table(spec.table);
  if (spec.label.empty()) throw ConfigError("dataset: label column is empty");
  detail::Dialect::check_column(spec.label);
  const bool use_text = !spec.text.empty();
  if (use_text == !spec.features.empty())
    throw ConfigError("dataset of table " + quote_for_message(spec.table) + ": give either features or text, not " +
                      (use_text ? "both" : "neither"));
  for (const auto& f : spec.features) detail::Dialect::check_column(f);
  if (use_text) detail::Dialect::check_column(spec.text);
  if (spec.at && !impl.dialect.versioned())
    throw DataSourceError(impl.display + " is a MySQL server without Dolt: it cannot read at " +
                          quote_for_message(*spec.at) + "; pass at=None to read the current rows unpinned");
  std::optional<Featurizer> featurizer;
  if (use_text) featurizer.emplace(spec.text_dimension, spec.text_seed, spec.text);
  return featurizer;
}

// The plan of a scan at `hash`, and the columns it selects into `cols`: key, label, features or text.
ScanPlan scan_plan(DoltSource::Impl& impl, const DatasetSpec& spec, const std::string& hash,
                   const std::optional<Featurizer>& featurizer, std::vector<std::string>& cols) {
  ScanPlan plan;
  plan.spec = &spec;
  plan.hash = hash;
  plan.key = impl.primary_key(spec.table);
  plan.use_text = featurizer.has_value();
  plan.featurizer = featurizer ? &*featurizer : nullptr;
  cols = plan.key;
  cols.push_back(spec.label);
  if (plan.use_text) cols.push_back(spec.text);
  else cols.insert(cols.end(), spec.features.begin(), spec.features.end());
  plan.nk = plan.key.size();
  plan.label_at = plan.nk;
  plan.first_feature = plan.nk + 1;
  plan.nf = plan.use_text ? 1 : spec.features.size();
  return plan;
}

// Starts the scan; an SQL error that comes from a missing column is reported as that column missing.
std::unique_ptr<detail::RowReader> open_scan(DoltSource::Impl& impl, const ScanPlan& plan, const std::string& sql,
                                             const std::vector<SqlValue>& params, const std::vector<std::string>& cols) {
  try {
    return impl.conn->query(sql, params);
  } catch (const detail::ConnectionLost&) {
    throw;
  } catch (const DataSourceError&) {
    std::vector<std::string> wanted(cols.begin() + static_cast<std::ptrdiff_t>(plan.nk), cols.end());
    impl.check_columns(plan.spec->table, plan.hash, wanted);
    throw;
  }
}

// A slice value as a lookup key: numbers by value (5 and 5.0 are one key), text and bytes by their bytes.
std::string number_key(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9.0e18) return "i" + std::to_string(static_cast<std::int64_t>(v));
  char buf[32];
  std::snprintf(buf, sizeof buf, "r%.17g", v);
  return buf;
}

std::optional<std::string> slice_key(const SqlValue& v) {
  return std::visit(
      [](const auto& x) -> std::optional<std::string> {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::nullptr_t>) return std::nullopt;
        else if constexpr (std::is_same_v<T, std::int64_t>) return "i" + std::to_string(x);
        else if constexpr (std::is_same_v<T, double>) return number_key(x);
        else if constexpr (std::is_same_v<T, std::string>) return "t" + x;
        else return "b" + x.bytes;
      },
      v);
}

std::optional<std::string> slice_key(detail::RowReader& r, std::size_t c) {
  switch (r.kind(c)) {
    case CellKind::Null: return std::nullopt;
    case CellKind::Int: return "i" + std::to_string(r.get_int(c));
    case CellKind::Real: return number_key(r.get_real(c));
    case CellKind::Text: return "t" + std::string(r.get_text(c));
    case CellKind::Blob: return "b" + std::string(r.get_blob(c));
  }
  return std::nullopt;
}

// A server is sent the wanted values (fewer rows on the wire) up to this many; DoltLite, and a longer
// list, scan the whole table and keep the wanted rows.
constexpr std::size_t kMaxInList = 10000;

// The side of the hashed evaluation split a read keeps (DatasetSpec::holdout), for one salt.
class HoldoutFilter {
 public:
  HoldoutFilter(const ScanPlan& plan, std::string salt) : plan_(plan), salt_(std::move(salt)) {
    const Holdout& h = plan.spec->holdout;
    // fraction·2^64 as an integer threshold; 1 - 2^-64 would round to 2^64, so fractions stay below 1.
    threshold_ = static_cast<std::uint64_t>(std::ldexp(h.fraction, 64));
  }
  [[nodiscard]] bool keep(detail::RowReader& r) const {
    const HoldoutSide side = plan_.spec->holdout.side;
    if (side == HoldoutSide::All) return true;
    std::string key = salt_;
    key.push_back('\0');
    for (std::size_t i = 0; i < plan_.nk; ++i) {
      const std::string part = slice_key(r, i).value_or("n");
      key += std::to_string(part.size()) + ":" + part;
    }
    const std::string hex = detail::sha256_hex(key);
    const bool evaluation = std::stoull(hex.substr(0, 16), nullptr, 16) < threshold_;
    return evaluation == (side == HoldoutSide::Evaluation);
  }
  [[nodiscard]] nlohmann::json lineage() const {
    const Holdout& h = plan_.spec->holdout;
    if (h.side == HoldoutSide::All) return nlohmann::json::object();
    return {{"side", h.side == HoldoutSide::Train ? "train" : "evaluation"}, {"salt", salt_}, {"fraction", h.fraction}};
  }

 private:
  const ScanPlan& plan_;
  std::string salt_;
  std::uint64_t threshold_ = 0;
};

// A holdout needs a fraction in [0, 1) and a primary key to hash.
void check_holdout(const ScanPlan& plan) {
  const Holdout& h = plan.spec->holdout;
  if (h.side == HoldoutSide::All) return;
  if (!(h.fraction >= 0 && h.fraction < 1))
    throw ConfigError("dataset of table " + quote_for_message(plan.spec->table) + ": holdout fraction " +
                      std::to_string(h.fraction) + " is not in [0, 1)");
  if (plan.nk == 0)
    throw DataError("table " + quote_for_message(plan.spec->table) +
                    " has no primary key: evaluation rows are chosen by a hash of each row's key, so the table "
                    "needs one (or set the adapter's eval_fraction to 0)");
}

}  // namespace

Dataset DoltSource::Impl::dataset(const DatasetSpec& spec) {
  const auto featurizer = checked(spec, *this);
  return read([&]() -> Dataset {
    // One snapshot, so HEAD, the status and the rows agree.
    detail::ReadSnapshot snapshot(*conn);
    const std::string hash = spec.at ? resolve(*spec.at) : std::string();
    // When the commit is the unchanged HEAD, the live table holds exactly its rows and reads without
    // materialising a historical copy. The lineage keeps the pinned query either way.
    const std::string read_hash = live_or(spec.table, hash);
    std::vector<std::string> cols;
    const ScanPlan plan = scan_plan(*this, spec, hash, featurizer, cols);
    // Rows come in key order, so X is the same for the same commit.
    const auto order = dialect.scans_in_key_order() ? std::vector<std::string>{} : plan.key;
    const std::string sql = dialect.select(cols, spec.table, hash, spec.where, order);
    const std::string run_sql = read_hash == hash ? sql : dialect.select(cols, spec.table, read_hash, spec.where, order);
    check_holdout(plan);
    const HoldoutFilter holdout(plan, spec.holdout.salt);
    auto r = open_scan(*this, plan, run_sql, spec.params, cols);
    ScanResult scan(plan, std::size_t{1} << 20);
    scan_rows(*r, plan, [&](detail::RowReader& row) { return holdout.keep(row) ? &scan : nullptr; });
    r.reset();
    snapshot.end();
    if (scan.rows == 0) {
      // Refused here, naming the filter, rather than later as an untrainable dataset far from its cause.
      const std::string filter = spec.where.empty()
                                     ? std::string(" has no rows")
                                     : ": no row matches where " + quote_for_message(spec.where) +
                                           (spec.params.empty() ? std::string() : " with params " + params_json(spec.params).dump());
      throw DataError("table " + quote_for_message(spec.table) + (hash.empty() ? std::string() : " at commit " + hash) +
                      filter + " (an empty dataset cannot be trained or evaluated)");
    }
    return finish(scan, plan, sql, spec.params, display, holdout.lineage());
  });
}

Dataset DoltSource::dataset(const DatasetSpec& spec) {
  MLOPS_LOCK;
  return impl_->dataset(spec);
}

std::vector<Dataset> DoltSource::datasets(const DatasetSpec& spec, const std::string& by,
                                          const std::vector<SqlValue>& values, const std::vector<std::string>& salts) {
  MLOPS_LOCK;
  auto& impl = *impl_;
  if (!spec.where.empty() || !spec.params.empty())
    throw ConfigError("datasets of table " + quote_for_message(spec.table) +
                      ": each slice is `" + by + " = value`; leave where and params empty");
  detail::Dialect::check_column(by);
  const auto featurizer = checked(spec, impl);
  std::unordered_map<std::string, std::size_t> slice_of;
  for (std::size_t i = 0; i < values.size(); ++i) {
    auto key = slice_key(values[i]);
    if (!key) throw ConfigError("datasets: value " + std::to_string(i) + " is NULL, which `" + by + " = ?` matches no row of");
    if (!slice_of.emplace(std::move(*key), i).second)
      throw ConfigError("datasets: value " + std::to_string(i) + " (" + params_json({values[i]})[0].dump() +
                        ") is given twice");
  }
  if (!salts.empty() && salts.size() != values.size())
    throw ConfigError("datasets: " + std::to_string(salts.size()) + " holdout salts for " +
                      std::to_string(values.size()) + " values");
  if (values.empty()) return {};
  return impl.read([&]() -> std::vector<Dataset> {
    detail::ReadSnapshot snapshot(*impl.conn);
    const std::string hash = spec.at ? impl.resolve(*spec.at) : std::string();
    const std::string read_hash = impl.live_or(spec.table, hash);
    std::vector<std::string> cols;
    const ScanPlan plan = scan_plan(impl, spec, hash, featurizer, cols);
    const auto order = impl.dialect.scans_in_key_order() ? std::vector<std::string>{} : plan.key;
    // What each slice's own read runs, for its lineage.
    const std::string slice_sql = impl.dialect.select(cols, spec.table, hash, by + " = ?", order);
    // The one pass: the same columns and `by`, in key order, so each slice's rows keep their order.
    std::vector<std::string> all = cols;
    all.push_back(by);
    std::string where;
    std::vector<SqlValue> params;
    if (!impl.dialect.scans_in_key_order() && values.size() <= kMaxInList) {
      where = by + " IN (?";
      for (std::size_t i = 1; i < values.size(); ++i) where += ", ?";
      where += ")";
      params = values;
    }
    check_holdout(plan);
    std::vector<HoldoutFilter> holdouts;
    holdouts.reserve(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) holdouts.emplace_back(plan, salts.empty() ? spec.holdout.salt : salts[i]);
    auto r = open_scan(impl, plan, impl.dialect.select(all, spec.table, read_hash, where, order), params, all);
    std::vector<ScanResult> parts;
    parts.reserve(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) parts.emplace_back(plan, std::size_t{1} << 14);
    const std::size_t by_at = cols.size();
    scan_rows(*r, plan, [&](detail::RowReader& row) -> ScanResult* {
      const auto key = slice_key(row, by_at);
      if (!key) return nullptr;
      const auto it = slice_of.find(*key);
      if (it == slice_of.end() || !holdouts[it->second].keep(row)) return nullptr;
      return &parts[it->second];
    });
    r.reset();
    snapshot.end();
    std::vector<Dataset> out;
    out.reserve(values.size());
    for (std::size_t i = 0; i < values.size(); ++i)
      out.push_back(finish(parts[i], plan, slice_sql, {values[i]}, impl.display, holdouts[i].lineage()));
    return out;
  });
}

std::int64_t DoltSource::count(const std::string& table, const std::string& where, const std::vector<SqlValue>& params,
                               const std::optional<std::string>& at) {
  MLOPS_LOCK;
  detail::Dialect::check_table(table);
  if (at) impl_->require_versioned("count at a commit");
  return impl_->read([&] {
    detail::ReadSnapshot snapshot(*impl_->conn);
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
    snapshot.end();
    return v ? std::stoll(*v) : 0LL;
  });
}

}  // namespace mlops
