// mlops._core: the compiled core behind the pure-Python package `mlops`.
#include "bind.hpp"

#include "mlops/config.hpp"
#include "mlops/version.hpp"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "Compiled core of mlops; import `mlops` instead.";
  m.attr("__version__") = mlops::version();
  m.attr("components") = mlops::components();
  mlops::python::bind_errors(m);
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
