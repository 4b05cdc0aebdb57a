// C++ exceptions → Python: one class per mlops::Error type, same hierarchy, all under MlopsError.
#include "bind.hpp"

#include "mlops/dolt.hpp"
#include "mlops/error.hpp"

namespace mlops::python {

namespace {

struct Classes {
  py::object base, config, data_source, data, tracking, not_found, conflict, device, integrity, internal;
};
Classes* g_classes = nullptr;

py::object make_class(py::module_& m, const char* name, py::handle bases, const char* doc) {
  std::string qualified = std::string("mlops.") + name;
  PyObject* cls = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, bases.ptr(), nullptr);
  if (cls == nullptr) throw py::error_already_set();
  py::object obj = py::reinterpret_steal<py::object>(cls);
  m.attr(name) = obj;
  return obj;
}

// A message may quote bytes of the input (a parser's "last read" token), which need not be UTF-8:
// shown as \xNN rather than failing the conversion with a UnicodeDecodeError.
py::str text(std::string_view s) {
  PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "backslashreplace");
  if (o == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(o);
}

void raise(const py::object& cls, const Error& e) {
  py::object exc = cls(text(e.what()));
  exc.attr("id") = e.id();
  exc.attr("detail") = text(e.detail());
  if (auto* m = dynamic_cast<const MergeConflictError*>(&e)) {
    py::dict conflicts;
    for (const auto& t : m->conflicts()) conflicts[py::str(t.table)] = py::cast(t.keys);
    exc.attr("conflicts") = conflicts;
  }
  if (auto* t = dynamic_cast<const TrackingError*>(&e)) {
    exc.attr("http_status") = t->http_status();
    exc.attr("error_code") = t->error_code();
  }
  PyErr_SetObject(cls.ptr(), exc.ptr());
}

}  // namespace

void bind_errors(py::module_& m) {
  auto* c = new Classes();  // lives as long as the interpreter; never freed on purpose
  py::object exc = py::reinterpret_borrow<py::object>(PyExc_Exception);
  py::object value = py::reinterpret_borrow<py::object>(PyExc_ValueError);
  py::object lookup = py::reinterpret_borrow<py::object>(PyExc_LookupError);
  py::object runtime = py::reinterpret_borrow<py::object>(PyExc_RuntimeError);
  c->base = make_class(m, "MlopsError", exc, "Base of every mlops error. Attributes: id, detail.");
  c->config = make_class(m, "ConfigError", py::make_tuple(c->base, value),
                         "A configuration value is missing or malformed.");
  c->data_source = make_class(m, "DataSourceError", c->base, "A data source (Dolt, DoltLite, MySQL) failed.");
  c->data = make_class(m, "DataError", py::make_tuple(c->base, value), "Input data is invalid.");
  c->tracking = make_class(m, "TrackingError", c->base,
                           "The MLflow server answered with an error. Attributes: http_status, error_code.");
  c->not_found = make_class(m, "NotFoundError", py::make_tuple(c->base, lookup), "Something named does not exist.");
  c->conflict = make_class(m, "ConflictError", c->base, "Something already exists or changed under us.");
  c->device = make_class(m, "DeviceError", py::make_tuple(c->base, runtime), "A compute device is unusable.");
  c->integrity = make_class(m, "IntegrityError", c->base, "Stored bytes do not match what they claim.");
  c->internal = make_class(m, "InternalError", py::make_tuple(c->base, runtime), "A bug in mlops.");
  g_classes = c;

  py::register_exception_translator([](std::exception_ptr p) {
    if (!p) return;
    try {
      std::rethrow_exception(p);
    } catch (const ConfigError& e) {
      raise(g_classes->config, e);
    } catch (const DataSourceError& e) {
      raise(g_classes->data_source, e);
    } catch (const DataError& e) {
      raise(g_classes->data, e);
    } catch (const TrackingError& e) {
      raise(g_classes->tracking, e);
    } catch (const NotFoundError& e) {
      raise(g_classes->not_found, e);
    } catch (const ConflictError& e) {
      raise(g_classes->conflict, e);
    } catch (const DeviceError& e) {
      raise(g_classes->device, e);
    } catch (const IntegrityError& e) {
      raise(g_classes->integrity, e);
    } catch (const InternalError& e) {
      raise(g_classes->internal, e);
    } catch (const Error& e) {
      raise(g_classes->base, e);
    }
  });

  // Lets the Python tests check that every C++ type arrives as its own class, message intact.
  m.def("_raise_for_test", [](const std::string& kind, const std::string& message) {
    if (kind == "config") throw ConfigError(message);
    if (kind == "data_source") throw DataSourceError(message);
    if (kind == "data") throw DataError(message);
    if (kind == "tracking") throw TrackingError(message, 503, "TEMPORARILY_UNAVAILABLE");
    if (kind == "not_found") throw NotFoundError(message);
    if (kind == "conflict") throw ConflictError(message);
    if (kind == "device") throw DeviceError(message);
    if (kind == "integrity") throw IntegrityError(message);
    if (kind == "internal") throw InternalError(message);
    throw std::invalid_argument("unknown error kind " + kind);
  });
}

}  // namespace mlops::python
