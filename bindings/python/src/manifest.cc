#include <sstream>

#include "bind.hpp"
#include "mlops/error.hpp"
#include "mlops/manifest.hpp"

namespace mlops::python {

namespace {

std::string py_repr(const py::handle& h) { return py::repr(h).cast<std::string>(); }

ReleaseManifest::Entries entries_from_mapping(const py::handle& mapping) {
  if (!py::isinstance<py::dict>(mapping) && !py::hasattr(mapping, "items"))
    throw DataError("a manifest is built from a mapping of model name to version, got " +
                    py::str(py::type::of(mapping)).cast<std::string>());
  ReleaseManifest::Entries entries;
  for (auto item : mapping.attr("items")()) {
    auto pair = item.cast<py::tuple>();
    py::handle key = pair[0], value = pair[1];
    if (!py::isinstance<py::str>(key))
      throw DataError("manifest entry " + py_repr(key) + ": model name must be a str, got " +
                      py::str(py::type::of(key)).cast<std::string>());
    Py_ssize_t size = 0;
    const char* utf8 = PyUnicode_AsUTF8AndSize(key.ptr(), &size);
    if (utf8 == nullptr) {
      PyErr_Clear();
      throw DataError("manifest entry " + py_repr(key) + ": name is not valid UTF-8 (it has a lone surrogate)");
    }
    std::string name(utf8, static_cast<std::size_t>(size));
    if (py::isinstance<py::bool_>(value) || !py::isinstance<py::int_>(value))
      throw DataError("manifest entry " + py_repr(key) + ": version must be an integer >= 1, got " + py_repr(value) +
                      " (" + py::str(py::type::of(value).attr("__name__")).cast<std::string>() + ")");
    std::int64_t version;
    try {
      version = value.cast<std::int64_t>();
    } catch (const py::cast_error&) {
      throw DataError("manifest entry " + py_repr(key) + ": version " + py_repr(value) + " is out of range");
    }
    entries.emplace(std::move(name), version);
  }
  return entries;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

}  // namespace

void bind_manifest(py::module_& m) {
  py::class_<ManifestDiff>(m, "ManifestDiff", "What changed from one manifest to another.")
      .def_property_readonly("added",
                             [](const ManifestDiff& d) {
                               py::list out;
                               for (const auto& e : d.added) out.append(py::make_tuple(e.name, e.version));
                               return out;
                             },
                             "[(name, version)] in the other manifest only")
      .def_property_readonly("removed",
                             [](const ManifestDiff& d) {
                               py::list out;
                               for (const auto& e : d.removed) out.append(py::make_tuple(e.name, e.version));
                               return out;
                             },
                             "[(name, version)] in this manifest only")
      .def_property_readonly("changed",
                             [](const ManifestDiff& d) {
                               py::list out;
                               for (const auto& c : d.changed)
                                 out.append(py::make_tuple(c.name, c.old_version, c.new_version));
                               return out;
                             },
                             "[(name, old_version, new_version)]")
      .def("__bool__", [](const ManifestDiff& d) { return !d.empty(); })
      .def("__eq__", [](const ManifestDiff& a, const ManifestDiff& b) { return a == b; })
      .def("__repr__", [](const ManifestDiff& d) {
        return "ManifestDiff(added=" + std::to_string(d.added.size()) + ", removed=" +
               std::to_string(d.removed.size()) + ", changed=" + std::to_string(d.changed.size()) + ")";
      });

  py::class_<ReleaseManifest>(m, "ReleaseManifest", R"doc(
An immutable release: model name -> version, named by the MD5 of its canonical JSON.

Names are non-empty UTF-8 (at most 256 bytes, no control characters); versions are integers >= 1.
``to_json()`` equals ``json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``.
Behaves as a read-only mapping.
)doc")
      .def(py::init([](const py::object& mapping) { return ReleaseManifest(entries_from_mapping(mapping)); }),
           py::arg("versions") = py::dict(), "Raises DataError naming the first bad entry.")
      .def_static(
          "from_json",
          [](const std::string& text, std::optional<std::string> expected_md5) {
            return ReleaseManifest::from_json(text, expected_md5);
          },
          py::arg("text"), py::arg("expected_md5") = py::none(),
          "Parse and validate; DataError for anything not a manifest, IntegrityError on an MD5 mismatch.")
      .def_static(
          "load",
          [](const std::filesystem::path& path, std::optional<std::string> expected_md5) {
            return ReleaseManifest::load(path, expected_md5);
          },
          py::arg("path"), py::arg("expected_md5") = py::none())
      .def("save", &ReleaseManifest::save, py::arg("path"), "Write atomically (temporary file + rename).")
      .def("to_json", &ReleaseManifest::to_json, "The canonical JSON text.")
      .def_property_readonly("md5", &ReleaseManifest::md5, "Hex MD5 of to_json(): the release id.")
      .def_property_readonly("sha256", &ReleaseManifest::sha256, "Hex SHA-256 of to_json().")
      .def("image_tag", &ReleaseManifest::image_tag, py::arg("repository"),
           "'<repository>:<md5>'; DataError if the repository breaks Docker's reference grammar.")
      .def("diff", &ReleaseManifest::diff, py::arg("other"), "What changed from this manifest to `other`.")
      .def("with_version", &ReleaseManifest::with_version, py::arg("name"), py::arg("version"),
           "A copy with `name` set to `version`.")
      .def("without", &ReleaseManifest::without, py::arg("name"), "A copy without `name`.")
      .def("to_dict",
           [](const ReleaseManifest& r) {
             py::dict d;
             for (const auto& [k, v] : r.entries()) d[py::str(k)] = v;
             return d;
           })
      .def("keys", [](const ReleaseManifest& r) {
             py::list out;
             for (const auto& [k, v] : r.entries()) out.append(py::str(k));
             return out;
           })
      .def("values", [](const ReleaseManifest& r) {
             py::list out;
             for (const auto& [k, v] : r.entries()) out.append(v);
             return out;
           })
      .def("items", [](const ReleaseManifest& r) {
             py::list out;
             for (const auto& [k, v] : r.entries()) out.append(py::make_tuple(py::str(k), v));
             return out;
           })
      .def("get",
           [](const ReleaseManifest& r, const py::handle& name, const py::object& fallback) -> py::object {
             if (!py::isinstance<py::str>(name)) return fallback;
             auto it = r.entries().find(name.cast<std::string>());
             return it == r.entries().end() ? fallback : py::int_(it->second);
           },
           py::arg("name"), py::arg("default") = py::none())
      .def("__len__", &ReleaseManifest::size)
      .def("__iter__",
           [](const ReleaseManifest& r) {
             py::list keys;
             for (const auto& [k, v] : r.entries()) keys.append(py::str(k));
             return py::iter(keys);
           })
      .def("__getitem__",
           [](const ReleaseManifest& r, const std::string& name) {
             auto it = r.entries().find(name);
             if (it == r.entries().end()) throw py::key_error(name);
             return it->second;
           })
      .def("__contains__",
           [](const ReleaseManifest& r, const py::handle& name) {
             return py::isinstance<py::str>(name) && r.contains(name.cast<std::string>());
           })
      .def("__eq__",
           [](const ReleaseManifest& a, const py::handle& b) {
             return py::isinstance<ReleaseManifest>(b) && a == b.cast<const ReleaseManifest&>();
           })
      .def("__hash__", [](const ReleaseManifest& r) { return py::hash(py::str(r.md5())); })
      .def("__repr__",
           [](const ReleaseManifest& r) {
             std::ostringstream out;
             out << "ReleaseManifest(md5='" << r.md5() << "', {";
             std::size_t i = 0;
             for (const auto& [k, v] : r.entries()) {
               if (i == 8) {
                 out << ", ... " << r.size() - 8 << " more";
                 break;
               }
               out << (i++ ? ", " : "") << py_repr(py::str(k)) << ": " << v;
             }
             out << "})";
             return out.str();
           })
      .def("_repr_html_", [](const ReleaseManifest& r) {
        std::ostringstream out;
        out << "<div><b>ReleaseManifest</b> <code>" << r.md5() << "</code> (" << r.size() << " models)"
            << "<table><thead><tr><th>model</th><th>version</th></tr></thead><tbody>";
        for (const auto& [k, v] : r.entries())
          out << "<tr><td>" << html_escape(k) << "</td><td>" << v << "</td></tr>";
        out << "</tbody></table></div>";
        return out.str();
      });
}

}  // namespace mlops::python
