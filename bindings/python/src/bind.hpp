// Declarations shared by the binding files of mlops._core.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <nlohmann/json.hpp>

namespace mlops::python {

namespace py = pybind11;

// One function per concern; module.cc calls those this build has.
void bind_errors(py::module_& m);
void bind_manifest(py::module_& m);
void bind_dataset(py::module_& m);
void bind_dolt(py::module_& m);
void bind_mlflow(py::module_& m);
void bind_featurizer(py::module_& m);
void bind_trainer(py::module_& m);
void bind_serve(py::module_& m);
void bind_pipeline(py::module_& m);

// nlohmann::json <-> Python objects (dict, list, str, int, float, bool, None).
py::object json_to_py(const nlohmann::json& j);
nlohmann::json py_to_json(const py::handle& obj);

// A list of texts from a list/tuple/NumPy array/pandas Series of str; DataError naming the first row
// that is not text. `what` names the argument in messages.
std::vector<std::string> texts_of(const py::handle& obj, const std::string& what);

}  // namespace mlops::python

// nlohmann::json as a pybind11 argument and return type, converted as json_to_py/py_to_json do. A
// function returning JSON can then be bound with a GIL-releasing call guard directly: the result is
// converted after the call, with the GIL held again.
namespace pybind11::detail {
template <>
struct type_caster<nlohmann::json> {
  PYBIND11_TYPE_CASTER(nlohmann::json, const_name("object"));
  bool load(handle src, bool) {
    value = mlops::python::py_to_json(src);
    return true;
  }
  static handle cast(const nlohmann::json& j, return_value_policy, handle) {
    return mlops::python::json_to_py(j).release();
  }
};
}  // namespace pybind11::detail

namespace mlops {
class Dataset;
}
namespace mlops::python {
// Read-only zero-copy NumPy views of a dataset's X (rows×cols float32) and y (rows int32).
py::array dataset_x(const Dataset& d);
py::array dataset_y(const Dataset& d);
}  // namespace mlops::python
