#include "bind.hpp"
#include "mlops/error.hpp"
#include "mlops/featurizer.hpp"

namespace mlops::python {

std::vector<std::string> texts_of(const py::handle& obj, const std::string& what) {
  if (py::isinstance<py::str>(obj) || py::isinstance<py::bytes>(obj))
    throw DataError(what + " must be a list of texts, got one string (wrap it in a list)");
  py::object seq = py::reinterpret_borrow<py::object>(obj);
  if (py::hasattr(obj, "tolist")) seq = obj.attr("tolist")();  // NumPy arrays and pandas Series
  if (!py::isinstance<py::sequence>(seq) || py::isinstance<py::str>(seq))
    throw DataError(what + " must be a list of texts, got " + py::str(py::type::of(obj)).cast<std::string>());
  std::vector<std::string> out;
  auto s = py::reinterpret_borrow<py::sequence>(seq);
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    py::object v = s[i];
    // A column of a 2-D array of shape (n, 1) arrives as one-element lists.
    if (py::isinstance<py::list>(v) && py::len(v) == 1) v = v.cast<py::list>()[0];
    if (!py::isinstance<py::str>(v))
      throw DataError(what + ": row " + std::to_string(i) + " is " + py::str(py::type::of(v)).cast<std::string>() +
                      ", not text");
    out.push_back(v.cast<std::string>());
  }
  return out;
}

void bind_featurizer(py::module_& m) {
  py::class_<Featurizer>(m, "Featurizer", R"doc(
The text featurizer: hashed word unigrams and bigrams, L2-normalised, float32 rows of width `dimension`.

The same bytes at training time (DoltSource.dataset(text=...)) and at prediction time (Adapter.predict on
raw text). Words are maximal runs of ASCII letters/digits or non-ASCII bytes, ASCII-lowercased.
)doc")
      .def(py::init([](const std::string& kind, int dimension, std::uint64_t seed, std::string text) {
             if (kind != Featurizer::kHashedWords)
               throw ConfigError("unknown featurizer kind '" + kind + "'; the only kind is " + Featurizer::kHashedWords);
             return Featurizer(dimension, seed, std::move(text));
           }),
           py::kw_only(), py::arg("kind") = Featurizer::kHashedWords, py::arg("dimension") = 1024,
           py::arg("seed") = 0, py::arg("text") = "")
      .def_static("from_settings", [](const py::dict& s) { return Featurizer::from_settings(py_to_json(s)); },
                  py::arg("settings"), "Rebuild from settings (an adapter's or a dataset lineage's `featurizer`).")
      .def_property_readonly("kind", [](const Featurizer& f) { return std::string(f.kind()); })
      .def_property_readonly("dimension", &Featurizer::dimension)
      .def_property_readonly("seed", &Featurizer::seed)
      .def_property_readonly("text", &Featurizer::text, "The text column ('' when not known).")
      .def_property_readonly("settings", [](const Featurizer& f) { return json_to_py(f.settings()); })
      .def("transform",
           [](const Featurizer& f, const py::handle& texts) {
             auto t = texts_of(texts, "texts");
             auto* X = new std::vector<float>();
             {
               py::gil_scoped_release release;
               *X = f.transform(t);
             }
             py::capsule owner(X, [](void* p) { delete static_cast<std::vector<float>*>(p); });
             return py::array(py::dtype::of<float>(),
                              {static_cast<py::ssize_t>(t.size()), static_cast<py::ssize_t>(f.dimension())}, {},
                              X->data(), owner);
           },
           py::arg("texts"), "Features of a list of texts: float32 (len(texts), dimension).")
      .def("__repr__", [](const Featurizer& f) {
        return "Featurizer(kind='" + std::string(f.kind()) + "', dimension=" + std::to_string(f.dimension()) +
               ", seed=" + std::to_string(f.seed()) + (f.text().empty() ? "" : ", text='" + f.text() + "'") + ")";
      });
}

}  // namespace mlops::python
