#include <memory>

#include "bind.hpp"
#include "mlops/dataset.hpp"
#include "mlops/error.hpp"

namespace mlops::python {

namespace {

// A read-only NumPy view of shared storage; the capsule keeps the storage alive.
template <typename T>
py::array shared_view(std::shared_ptr<const std::vector<T>> storage, std::vector<py::ssize_t> shape) {
  auto* holder = new std::shared_ptr<const std::vector<T>>(storage);
  py::capsule owner(holder, [](void* p) { delete static_cast<std::shared_ptr<const std::vector<T>>*>(p); });
  py::array arr(py::dtype::of<T>(), shape, {}, storage->data(), owner);
  py::detail::array_proxy(arr.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return arr;
}

template <typename T>
std::vector<T> copy_exact(const py::handle& obj, const char* name, int ndim) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + " must be a NumPy array, got " +
                         py::str(py::type::of(obj)).cast<std::string>());
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (!arr.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string(name) + " must have dtype " + py::str(py::dtype::of<T>()).cast<std::string>() +
                         ", got " + py::str(arr.dtype()).cast<std::string>() + " (convert with .astype)");
  if (arr.ndim() != ndim)
    throw py::type_error(std::string(name) + " must be " + std::to_string(ndim) + "-dimensional, got " +
                         std::to_string(arr.ndim()));
  if (!(arr.flags() & py::array::c_style))
    throw py::type_error(std::string(name) + " must be C-contiguous (use numpy.ascontiguousarray)");
  const T* data = static_cast<const T*>(arr.data());
  return std::vector<T>(data, data + arr.size());
}

}  // namespace

py::array dataset_x(const Dataset& d) {
  return shared_view(d.x_storage(), {static_cast<py::ssize_t>(d.rows()), static_cast<py::ssize_t>(d.cols())});
}

py::array dataset_y(const Dataset& d) { return shared_view(d.y_storage(), {static_cast<py::ssize_t>(d.rows())}); }

void bind_dataset(py::module_& m) {
  py::class_<Dataset>(m, "Dataset", R"doc(
Features, labels and lineage of one training set. Immutable.

X is a read-only float32 array of shape (rows, cols), row-major; y is int32 class indices into
``classes``. Both are views of the dataset's own memory (no copy).
)doc")
      .def(py::init([](const py::handle& X, const py::handle& y, std::optional<std::vector<std::string>> classes,
                       std::optional<py::dict> lineage) {
             auto xv = copy_exact<float>(X, "X", 2);
             auto yv = copy_exact<std::int32_t>(y, "y", 1);
             auto xa = py::reinterpret_borrow<py::array>(X);
             const auto rows = static_cast<std::size_t>(xa.shape(0));
             const auto cols = static_cast<std::size_t>(xa.shape(1));
             std::vector<std::string> cls;
             if (classes) {
               cls = std::move(*classes);
             } else {
               std::int32_t top = -1;
               for (auto v : yv) top = std::max(top, v);
               for (std::int32_t i = 0; i <= top; ++i) cls.push_back(std::to_string(i));
             }
             DatasetLineage l = lineage ? DatasetLineage::from_json(py_to_json(*lineage)) : DatasetLineage{};
             return Dataset(std::move(xv), rows, cols, std::move(yv), std::move(cls), std::move(l));
           }),
           py::arg("X"), py::arg("y"), py::arg("classes") = py::none(), py::arg("lineage") = py::none(),
           "Copies X (float32, C-contiguous, rows×cols) and y (int32, rows). Without `classes`, the classes "
           "are '0'..str(max(y)).")
      .def_property_readonly("X", &dataset_x, "Read-only float32 view, shape (rows, cols).")
      .def_property_readonly("y", &dataset_y, "Read-only int32 view, shape (rows,).")
      .def_property_readonly("classes", &Dataset::classes)
      .def_property_readonly("rows", &Dataset::rows)
      .def_property_readonly("cols", &Dataset::cols)
      .def_property_readonly("digest", &Dataset::content_digest, "SHA-256 of the contents (hex).")
      .def_property_readonly("lineage", [](const Dataset& d) { return json_to_py(d.lineage().to_json()); })
      .def("validate", &Dataset::validate, py::arg("what") = "dataset",
           "Raise DataError naming `what`, the field and the row if a value is invalid.")
      .def("take",
           [](const Dataset& d, const std::vector<std::size_t>& idx) { return d.take(idx); },
           py::arg("indices"))
      .def("__len__", &Dataset::rows)
      .def("__repr__", [](const Dataset& d) {
        std::string r = "Dataset(rows=" + std::to_string(d.rows()) + ", cols=" + std::to_string(d.cols()) +
                        ", classes=" + std::to_string(d.classes().size());
        if (!d.lineage().table.empty()) r += ", table='" + d.lineage().table + "'";
        if (!d.lineage().commit.empty()) r += ", commit='" + d.lineage().commit.substr(0, 12) + "'";
        return r + ")";
      });
}

}  // namespace mlops::python
