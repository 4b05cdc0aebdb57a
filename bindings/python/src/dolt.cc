// mlops.DoltSource, Commit, Diff, Table.
#include <optional>

#include "bind.hpp"
#include "mlops/dolt.hpp"
#include "mlops/error.hpp"
#include "mlops/table.hpp"

namespace mlops::python {

namespace {

SqlValue to_sql_value(const py::handle& v, std::size_t index) {
  if (v.is_none()) return nullptr;
  if (py::isinstance<py::bool_>(v)) return static_cast<std::int64_t>(v.cast<bool>());
  if (py::isinstance<py::int_>(v)) {
    try {
      return v.cast<std::int64_t>();
    } catch (const py::cast_error&) {
      throw py::value_error("parameter " + std::to_string(index) + " does not fit in a 64-bit integer");
    }
  }
  if (py::isinstance<py::float_>(v)) return v.cast<double>();
  if (py::isinstance<py::str>(v)) return v.cast<std::string>();
  if (py::isinstance<py::bytes>(v)) return Blob{v.cast<std::string>()};
  if (py::isinstance<py::bytearray>(v) || py::isinstance<py::memoryview>(v))
    return Blob{py::bytes(py::reinterpret_borrow<py::object>(v)).cast<std::string>()};
  // NumPy scalars and other numbers.
  if (py::hasattr(v, "__index__")) return py::int_(py::reinterpret_borrow<py::object>(v)).cast<std::int64_t>();
  if (py::hasattr(v, "__float__")) return py::float_(py::reinterpret_borrow<py::object>(v)).cast<double>();
  throw py::type_error("parameter " + std::to_string(index) + " has type " +
                       py::str(py::type::of(v).attr("__name__")).cast<std::string>() +
                       "; use None, int, float, str or bytes");
}

std::vector<SqlValue> to_params(const py::object& params) {
  std::vector<SqlValue> out;
  if (params.is_none()) return out;
  if (py::isinstance<py::str>(params) || py::isinstance<py::bytes>(params) || !py::isinstance<py::sequence>(params))
    throw py::type_error("params must be a sequence (tuple or list) of values");
  std::size_t i = 0;
  for (auto item : params.cast<py::sequence>()) out.push_back(to_sql_value(item, i++));
  return out;
}

std::string path_string(const py::object& p) {
  if (py::isinstance<py::str>(p)) return p.cast<std::string>();
  return py::str(py::module_::import("os").attr("fspath")(p)).cast<std::string>();
}

py::object column_array(const Column& c) {
  const auto n = static_cast<py::ssize_t>(c.size());
  bool any_null = false;
  for (auto v : c.null) any_null = any_null || v;
  switch (c.type) {
    case ColumnType::Int64:
      if (!any_null) return py::array_t<std::int64_t>(n, c.ints.data());
      {
        py::array_t<double> a(n);
        auto m = a.mutable_unchecked<1>();
        for (py::ssize_t i = 0; i < n; ++i) m(i) = c.null[i] ? std::nan("") : static_cast<double>(c.ints[i]);
        return a;
      }
    case ColumnType::Float64: {
      py::array_t<double> a(n, c.reals.data());
      auto m = a.mutable_unchecked<1>();
      for (py::ssize_t i = 0; i < n; ++i)
        if (c.null[i]) m(i) = std::nan("");
      return a;
    }
    default: {
      py::array a(py::dtype("O"), std::vector<py::ssize_t>{n});
      auto* data = static_cast<PyObject**>(a.mutable_data());
      for (py::ssize_t i = 0; i < n; ++i) {
        py::object v;
        if (c.null[i] || c.type == ColumnType::Null) v = py::none();
        else if (c.type == ColumnType::Bytes) v = py::bytes(c.strings[i]);
        else v = py::str(c.strings[i]);
        Py_XDECREF(data[i]);
        data[i] = v.release().ptr();
      }
      return a;
    }
  }
}

py::array null_mask(const Column& c) {
  py::array_t<bool> a(static_cast<py::ssize_t>(c.size()));
  auto m = a.mutable_unchecked<1>();
  for (std::size_t i = 0; i < c.size(); ++i) m(static_cast<py::ssize_t>(i)) = c.null[i] != 0;
  return a;
}

py::dict table_to_numpy(const Table& t) {
  py::dict d;
  for (const auto& c : t.columns()) d[py::str(c.name)] = column_array(c);
  return d;
}

py::object table_to_pandas(const Table& t) {
  auto pd = py::module_::import("pandas");
  py::dict d;
  for (const auto& c : t.columns()) {
    bool any_null = false;
    for (auto v : c.null) any_null = any_null || v;
    if (c.type == ColumnType::Int64 && any_null) {
      py::array_t<std::int64_t> values(static_cast<py::ssize_t>(c.size()), c.ints.data());
      d[py::str(c.name)] = pd.attr("arrays").attr("IntegerArray")(values, null_mask(c));
    } else {
      d[py::str(c.name)] = column_array(c);
    }
  }
  return pd.attr("DataFrame")(d);
}

std::string commit_repr(const Commit& c) {
  return "Commit(hash='" + c.hash + "', message=" + py::repr(py::str(c.message)).cast<std::string>() + ")";
}

}  // namespace

void bind_dolt(py::module_& m) {
  py::class_<Table>(m, "Table", "A query result held by column (int64, float64, text, bytes, with NULLs).")
      .def_property_readonly("rows", &Table::rows)
      .def_property_readonly("cols", &Table::cols)
      .def_property_readonly("names", &Table::names, "Column names in result order.")
      .def_property_readonly("types",
                             [](const Table& t) {
                               py::dict d;
                               for (const auto& c : t.columns()) d[py::str(c.name)] = column_type_name(c.type);
                               return d;
                             },
                             "Column name -> 'int64' | 'float64' | 'text' | 'bytes' | 'null'.")
      .def("column", [](const Table& t, const std::string& name) { return column_array(t.column(name)); },
           py::arg("name"),
           "One column as a NumPy array: int64 (float64 with NaN when it has NULLs), float64 (NaN for NULL), "
           "or object (str/bytes/None).")
      .def("null_mask", [](const Table& t, const std::string& name) { return null_mask(t.column(name)); },
           py::arg("name"), "Boolean array: True where the column is NULL.")
      .def("to_numpy", &table_to_numpy, "dict of column name -> NumPy array (see column()).")
      .def("to_pandas", &table_to_pandas, "A pandas DataFrame (nullable Int64 for integer columns with NULLs).")
      .def("__len__", &Table::rows)
      .def("__repr__", [](const Table& t) {
        std::string r = "Table(rows=" + std::to_string(t.rows()) + ", columns=[";
        for (std::size_t i = 0; i < t.cols(); ++i)
          r += (i ? ", " : "") + t.columns()[i].name + ":" + column_type_name(t.columns()[i].type);
        return r + "])";
      });

  py::class_<Commit>(m, "Commit", "One Dolt commit; `hash` is opaque (40 hex for DoltLite, 32 base32 for Dolt).")
      .def_readonly("hash", &Commit::hash)
      .def_readonly("message", &Commit::message)
      .def_readonly("author", &Commit::author)
      .def_readonly("email", &Commit::email)
      .def_readonly("date", &Commit::date)
      .def("__eq__", [](const Commit& a, const Commit& b) { return a == b; })
      .def("__hash__", [](const Commit& c) { return py::hash(py::str(c.hash)); })
      .def("__repr__", &commit_repr);

  py::class_<Diff>(m, "Diff", "Row changes of one table between two commits.")
      .def_readonly("from_commit", &Diff::from_commit)
      .def_readonly("to_commit", &Diff::to_commit)
      .def_readonly("table", &Diff::table)
      .def_readonly("key", &Diff::key, "The table's primary-key columns, in key order.")
      .def_readonly("added", &Diff::added)
      .def_readonly("modified", &Diff::modified)
      .def_readonly("removed", &Diff::removed)
      .def_readonly("rows", &Diff::rows, "diff_type, from_<col>..., to_<col>... for every changed row.")
      .def("__repr__", [](const Diff& d) {
        return "Diff(table='" + d.table + "', added=" + std::to_string(d.added) + ", modified=" +
               std::to_string(d.modified) + ", removed=" + std::to_string(d.removed) + ")";
      });

  py::class_<MergeResult>(m, "MergeResult", "The outcome of a merge.")
      .def_readonly("commit", &MergeResult::commit, "The target branch's tip after the merge.")
      .def_readonly("fast_forward", &MergeResult::fast_forward, "The target only moved forward.")
      .def_readonly("up_to_date", &MergeResult::up_to_date, "The branch was already merged; nothing changed.")
      .def("__repr__", [](const MergeResult& r) {
        return "MergeResult(commit='" + r.commit + "', fast_forward=" + (r.fast_forward ? "True" : "False") +
               ", up_to_date=" + (r.up_to_date ? "True" : "False") + ")";
      });

  py::class_<DoltSource>(m, "DoltSource", R"doc(
Versioned SQL data from embedded DoltLite (a file path, ``doltlite:///abs.db``, ``doltlite:rel.db``) or a
Dolt sql-server (``mysql://user[:password]@host[:port]/db?branch=...&ssl-mode=...``; the password may
come from ``MLOPS_DOLT_PASSWORD``). Passwords never appear in messages or lineage. A missing DoltLite file
is a NotFoundError, as on the command line; ``create=True`` makes a new, empty database instead.
)doc")
      .def(py::init([](const std::string& uri, const std::string& doltlite_lib, int connect_timeout,
                       int read_timeout, int write_timeout, int max_retries, bool create) {
             DoltOptions o;
             o.create = create;
             o.doltlite_lib = doltlite_lib;
             o.connect_timeout_s = connect_timeout;
             o.read_timeout_s = read_timeout;
             o.write_timeout_s = write_timeout;
             o.max_retries = max_retries;
             py::gil_scoped_release nogil;
             return DoltSource(uri, o);
           }),
           py::arg("uri"), py::arg("doltlite_lib") = "", py::arg("connect_timeout") = 10,
           py::arg("read_timeout") = 600, py::arg("write_timeout") = 600, py::arg("max_retries") = 3,
           py::arg("create") = false)
      .def_property_readonly("uri", &DoltSource::uri, "The URI without secrets.")
      .def_property_readonly("backend", &DoltSource::backend, "'doltlite', 'dolt' or 'mysql' (no version control).")
      .def("head", &DoltSource::head, py::call_guard<py::gil_scoped_release>())
      .def("log", &DoltSource::log, py::arg("limit") = 20, py::call_guard<py::gil_scoped_release>())
      .def("resolve", &DoltSource::resolve, py::arg("ref"), py::call_guard<py::gil_scoped_release>(),
           "The commit hash a branch, tag, HEAD~n or hash names (NotFoundError otherwise).")
      .def("commit_info", &DoltSource::commit_info, py::arg("ref"), py::call_guard<py::gil_scoped_release>())
      .def("branches", &DoltSource::branches, py::call_guard<py::gil_scoped_release>())
      .def("active_branch", &DoltSource::active_branch, py::call_guard<py::gil_scoped_release>())
      .def("create_branch", &DoltSource::create_branch, py::arg("name"), py::arg("start") = "HEAD",
           py::call_guard<py::gil_scoped_release>())
      .def("checkout", &DoltSource::checkout, py::arg("name"), py::call_guard<py::gil_scoped_release>())
      .def(
          "commit",
          [](DoltSource& s, const std::string& message, std::optional<std::string> author) {
            py::gil_scoped_release nogil;
            return s.commit(message, author.value_or(""));
          },
          py::arg("message"), py::arg("author") = py::none(),
          "Stage everything and commit. ConflictError when there is nothing to commit.")
      .def("delete_branch", &DoltSource::delete_branch, py::arg("name"), py::arg("force") = false,
           py::call_guard<py::gil_scoped_release>(),
           "Delete a branch (NotFoundError if missing; ConflictError for the active branch, or for unmerged "
           "commits unless force=True).")
      .def(
          "merge",
          [](DoltSource& s, const std::string& branch, std::optional<std::string> message,
             std::optional<std::string> into) {
            py::gil_scoped_release nogil;
            return s.merge(branch, message.value_or(""), into.value_or(""));
          },
          py::arg("branch"), py::arg("message") = py::none(), py::arg("into") = py::none(),
          R"doc(Merge `branch` into `into` (default: the active branch, which stays active): a fast-forward, or a
merge commit with `message`. On conflicting rows nothing is merged and ConflictError is raised with
``conflicts``: {table: ["key=value, ...", ...]}. ConflictError too when the target has uncommitted changes.)doc")
      .def("merge_base", &DoltSource::merge_base, py::arg("a"), py::arg("b"), py::call_guard<py::gil_scoped_release>(),
           "The newest commit both refs descend from.")
      .def("changed_tables", &DoltSource::changed_tables, py::arg("from_ref"), py::arg("to_ref"),
           py::call_guard<py::gil_scoped_release>(), "Tables whose rows differ between two refs, by name.")
      .def("tags", &DoltSource::tags, py::call_guard<py::gil_scoped_release>())
      .def("create_tag", &DoltSource::create_tag, py::arg("name"), py::arg("ref") = "HEAD",
           py::call_guard<py::gil_scoped_release>())
      .def(
          "execute",
          [](DoltSource& s, const std::string& sql, const py::object& params) {
            auto p = to_params(params);
            py::gil_scoped_release nogil;
            return s.execute(sql, p);
          },
          py::arg("sql"), py::arg("params") = py::tuple(), "Run a statement with bound values; returns affected rows.")
      .def(
          "query",
          [](DoltSource& s, const std::string& sql, const py::object& params, std::optional<std::string> at) {
            auto p = to_params(params);
            py::gil_scoped_release nogil;
            return s.query(sql, p, at);
          },
          py::arg("sql"), py::arg("params") = py::tuple(), py::arg("at") = py::none(),
          "Run a query (at a ref, read-only, when `at` is given) and return a Table.")
      .def(
          "dataset",
          [](DoltSource& s, const std::string& table, const std::string& label,
             std::optional<std::vector<std::string>> features, std::optional<std::string> text,
             std::optional<std::string> where, const py::object& params, std::optional<std::string> at,
             bool drop_invalid, int dimension, std::uint64_t seed, std::optional<std::string> holdout,
             const std::string& holdout_salt, double holdout_fraction) {
            DatasetSpec spec;
            if (holdout) {
              if (*holdout == "train") spec.holdout.side = HoldoutSide::Train;
              else if (*holdout == "evaluation") spec.holdout.side = HoldoutSide::Evaluation;
              else throw ConfigError("holdout must be 'train', 'evaluation' or None, got '" + *holdout + "'");
              spec.holdout.salt = holdout_salt;
              spec.holdout.fraction = holdout_fraction;
            }
            spec.table = table;
            spec.label = label;
            spec.features = features.value_or(std::vector<std::string>{});
            spec.text = text.value_or("");
            spec.where = where.value_or("");
            spec.params = to_params(params);
            spec.at = at;
            spec.drop_invalid = drop_invalid;
            spec.text_dimension = dimension;
            spec.text_seed = seed;
            py::gil_scoped_release nogil;
            return s.dataset(spec);
          },
          py::arg("table"), py::arg("label"), py::arg("features") = py::none(), py::arg("text") = py::none(),
          py::arg("where") = py::none(), py::arg("params") = py::tuple(), py::arg("at") = "HEAD",
          py::arg("drop_invalid") = false, py::arg("dimension") = 1024, py::arg("seed") = 0,
          py::arg("holdout") = py::none(), py::arg("holdout_salt") = "", py::arg("holdout_fraction") = 0.0,
          R"doc(Read a training set at one commit: `at` is resolved to a hash once (None: current rows, unpinned).
Give numeric/float32-BLOB `features` or a `text` column (hashed word unigrams+bigrams, `dimension`, `seed`).
Invalid rows raise DataError naming table, column and key, or are skipped with drop_invalid=True.
holdout="train" or "evaluation" keeps one side of the split that holds out a row when SHA-256 of
`holdout_salt` and its primary key falls below `holdout_fraction` (stable across commits).)doc")
      .def(
          "datasets",
          [](DoltSource& s, const std::string& table, const std::string& by, const py::sequence& values,
             const std::string& label, std::optional<std::vector<std::string>> features, std::optional<std::string> text,
             std::optional<std::string> at, bool drop_invalid, int dimension, std::uint64_t seed) {
            DatasetSpec spec;
            spec.table = table;
            spec.label = label;
            spec.features = features.value_or(std::vector<std::string>{});
            spec.text = text.value_or("");
            spec.at = at;
            spec.drop_invalid = drop_invalid;
            spec.text_dimension = dimension;
            spec.text_seed = seed;
            auto v = to_params(values);
            std::vector<Dataset> read;
            {
              py::gil_scoped_release nogil;
              read = s.datasets(spec, by, v);
            }
            py::dict out;
            for (std::size_t i = 0; i < read.size(); ++i) out[values[i]] = py::cast(std::move(read[i]));
            return out;
          },
          py::arg("table"), py::arg("by"), py::arg("values"), py::arg("label"), py::arg("features") = py::none(),
          py::arg("text") = py::none(), py::arg("at") = "HEAD", py::arg("drop_invalid") = false,
          py::arg("dimension") = 1024, py::arg("seed") = 0,
          R"doc(Read one slice per value of column `by` in one scan at one commit: {value: Dataset}, each exactly
what dataset(where=f"{by} = ?", params=(value,)) returns (X, y, row order, classes, lineage, digest).
Numbers match by value, text byte for byte.)doc")
      .def(
          "count",
          [](DoltSource& s, const std::string& table, std::optional<std::string> where, const py::object& params,
             std::optional<std::string> at) {
            auto p = to_params(params);
            py::gil_scoped_release nogil;
            return s.count(table, where.value_or(""), p, at);
          },
          py::arg("table"), py::arg("where") = py::none(), py::arg("params") = py::tuple(), py::arg("at") = "HEAD")
      .def(
          "diff",
          [](DoltSource& s, const std::string& from_ref, const std::string& to_ref, const std::string& table,
             std::optional<std::string> where, const py::object& params) {
            auto p = to_params(params);
            py::gil_scoped_release nogil;
            return s.diff(from_ref, to_ref, table, where.value_or(""), p);
          },
          py::arg("from_ref"), py::arg("to_ref"), py::arg("table"), py::arg("where") = py::none(),
          py::arg("params") = py::tuple())
      .def(
          "import_csv",
          [](DoltSource& s, const std::string& table, const py::object& path_or_url,
             const std::vector<std::string>& primary_key, const std::string& message, const std::string& mode) {
            const std::string src = path_string(path_or_url);
            py::gil_scoped_release nogil;
            return s.import_csv(table, src, primary_key, message, mode);
          },
          py::arg("table"), py::arg("path_or_url"), py::arg("primary_key"), py::arg("message"),
          py::arg("mode") = "replace")
      .def("__repr__", [](const DoltSource& s) { return "DoltSource('" + s.uri() + "')"; });

  m.def("set_default_doltlite_library", &set_default_doltlite_library, py::arg("path"),
        "Where DoltLite is loaded from when neither doltlite_lib nor DOLTLITE_LIB is set.");
}

}  // namespace mlops::python
