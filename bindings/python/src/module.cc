// mlops._core: the compiled core behind the pure-Python package `mlops`.
#include "bind.hpp"

#include "core/uri.hpp"
#include "mlops/config.hpp"
#include "mlops/version.hpp"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "Compiled core of mlops; import `mlops` instead.";
  m.attr("__version__") = mlops::version();
  m.attr("components") = mlops::components();
  mlops::python::bind_errors(m);
  m.def("redact_uri", &mlops::detail::redact_uri, py::arg("text"),
        "`text` with the secrets of a URI in it removed: the whole user:password@ part and the values of "
        "secret-looking parameters (token=, sig=, X-Amz-Signature=, ...) become ***. The userinfo ends at "
        "the last '@'. Text that is not scheme://... is returned as it is.");
  m.def("_uri_file_name", [](const std::string& text) -> std::string {
    if (auto u = mlops::detail::Uri::parse(text)) return u->file_name();
    auto slash = text.find_last_of('/');
    return slash == std::string::npos ? text : text.substr(slash + 1);
  }, py::arg("text"), "The last path segment of a URI or path, without query, fragment or credentials.");
  mlops::python::bind_dataset(m);
  mlops::python::bind_manifest(m);
#if MLOPS_WITH_DOLT
  mlops::python::bind_dolt(m);
#endif
#if MLOPS_WITH_MLFLOW
  mlops::python::bind_mlflow(m);
  mlops::python::bind_serve(m);
#endif
  mlops::python::bind_featurizer(m);
  mlops::python::bind_trainer(m);
#if MLOPS_WITH_PIPELINE
  mlops::python::bind_pipeline(m);
#endif
}
