#include "bind.hpp"
#include "mlops/catalog.hpp"

namespace mlops::python {

void bind_pipeline(py::module_& m) {
  py::class_<CatalogEntry>(m, "CatalogEntry", "One adapter of a catalog: its name, data slice and hyperparameters.")
      .def_readonly("name", &CatalogEntry::name)
      .def_readonly("table", &CatalogEntry::table)
      .def_readonly("label", &CatalogEntry::label)
      .def_readonly("features", &CatalogEntry::features)
      .def_readonly("text", &CatalogEntry::text)
      .def_readonly("where", &CatalogEntry::where)
      .def_property_readonly("params", [](const CatalogEntry& e) { return json_to_py(e.params); })
      .def_property_readonly("hyperparameters",
                             [](const CatalogEntry& e) { return json_to_py(e.hyperparameters.to_json()); })
      .def_property_readonly("featurizer", [](const CatalogEntry& e) { return json_to_py(e.featurizer.to_json()); })
      .def("to_dict", [](const CatalogEntry& e) { return json_to_py(e.to_json()); })
      .def("__eq__", [](const CatalogEntry& a, const CatalogEntry& b) { return a == b; })
      .def("__repr__", [](const CatalogEntry& e) {
        return "CatalogEntry(name='" + e.name + "', table='" + e.table + "', label='" + e.label + "')";
      });

  py::class_<Catalog>(m, "Catalog", R"doc(
The adapters a pipeline trains and the data slice of each, validated.

Read from a .json/.toml file (``Catalog.load``), from text, or from a dict/list. Every invalid entry is
reported in one DataError, one line per problem, naming the adapter and the field.
)doc")
      .def_static("load", &Catalog::load, py::arg("path"))
      .def_static("from_json", &Catalog::from_json, py::arg("text"), py::arg("origin") = "catalog")
      .def_static("from_toml", &Catalog::from_toml, py::arg("text"), py::arg("origin") = "catalog")
      .def_static(
          "from_dict",
          [](const py::object& doc, const std::string& origin) { return Catalog::from_json_value(py_to_json(doc), origin); },
          py::arg("document"), py::arg("origin") = "catalog", "From {'defaults': {...}, 'adapters': [...]} or a list.")
      .def("to_dict", [](const Catalog& c) { return json_to_py(c.to_json()); })
      .def("names",
           [](const Catalog& c) {
             std::vector<std::string> out;
             for (const auto& e : c.entries()) out.push_back(e.name);
             return out;
           })
      .def("__len__", &Catalog::size)
      .def("__iter__", [](const Catalog& c) { return py::iter(py::cast(c.entries())); })
      .def("__getitem__", [](const Catalog& c, const std::string& name) {
             auto* e = c.find(name);
             if (!e) throw py::key_error(name);
             return *e;
           })
      .def("__contains__", [](const Catalog& c, const std::string& name) { return c.find(name) != nullptr; })
      .def("__repr__", [](const Catalog& c) { return "Catalog(" + std::to_string(c.size()) + " adapters)"; });
}

}  // namespace mlops::python
