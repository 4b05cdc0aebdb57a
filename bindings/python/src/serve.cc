#include <chrono>
#include <optional>

#include "bind.hpp"
#include "mlops/error.hpp"
#include "mlops/serve.hpp"

#include <pybind11/functional.h>

namespace mlops::python {

namespace {

py::list models_list(const Release& r) {
  py::list out;
  for (const auto& m : r.models()) {
    py::dict d;
    d["name"] = m.name;
    d["version"] = m.version;
    d["lineage"] = json_to_py(m.lineage);
    out.append(d);
  }
  return out;
}

}  // namespace

double seconds(std::chrono::milliseconds ms) { return static_cast<double>(ms.count()) / 1000.0; }

// A Python resolver, called with the GIL held. Its mlops errors keep their type and message; any other
// exception becomes a ConfigError naming the release: a traceback, or the install paths in it, is never
// sent to an HTTP client.
ReleaseResolver python_resolver(std::function<std::string(const std::string&)> fn) {
  return [fn = std::move(fn)](const std::string& name) -> std::filesystem::path {
    py::gil_scoped_acquire gil;
    try {
      return std::filesystem::path(fn(name));
    } catch (py::error_already_set& e) {
      py::module_ core = py::module_::import("mlops._core");
      const std::string detail = py::str(e.value());
      const auto as = [&](const char* cls) { return e.matches(core.attr(cls)); };
      const std::string msg = detail.rfind("[mlops.", 0) == 0 && detail.find("] ") != std::string::npos
                                  ? detail.substr(detail.find("] ") + 2)
                                  : detail;
      if (as("NotFoundError")) throw NotFoundError(msg);
      if (as("IntegrityError")) throw IntegrityError(msg);
      if (as("DataError")) throw DataError(msg);
      if (as("TrackingError")) throw TrackingError(msg);
      if (as("MlopsError")) throw ConfigError(msg);
      throw ConfigError("release '" + name + "' could not be resolved (" +
                        std::string(py::str(e.type().attr("__name__"))) + ")");
    }
  };
}

// A Server method that loads a release, called without the GIL (loading takes seconds and may call the
// resolver, which takes the GIL itself).
template <std::shared_ptr<const Release> (Server::*Method)(const std::string&)>
std::shared_ptr<Release> loading(Server& s, const std::string& release) {
  std::shared_ptr<const Release> r;
  {
    py::gil_scoped_release unlock;
    r = (s.*Method)(release);
  }
  return std::const_pointer_cast<Release>(r);
}

void bind_serve(py::module_& m) {
  const ServerOptions defaults;
  py::class_<Release, std::shared_ptr<Release>>(m, "Release",
                                                "Every adapter of one release, loaded from a build-context folder.")
      .def_static("load",
                  [](const std::filesystem::path& dir, unsigned threads) {
                    std::shared_ptr<const Release> r;
                    {
                      py::gil_scoped_release release;
                      r = Release::load(dir, threads);
                    }
                    return std::const_pointer_cast<Release>(r);
                  },
                  py::arg("directory"), py::arg("threads") = 0,
                  "Load manifest.json and every model under models/ (NotFoundError / IntegrityError).")
      .def_property_readonly("md5", &Release::md5)
      .def_property_readonly("image", &Release::image)
      .def_property_readonly("directory", &Release::directory)
      .def_property_readonly("load_seconds", &Release::load_seconds)
      .def_property_readonly("models", &models_list, "[{name, version, lineage}] sorted by name.")
      .def("adapter",
           [](const Release& r, const std::string& name) {
             const auto* sm = r.find(name);
             if (!sm) throw NotFoundError("release " + r.md5() + " has no model '" + name + "'");
             return sm->adapter;
           },
           py::arg("name"), "A copy of one model's Adapter.")
      .def("__len__", [](const Release& r) { return r.models().size(); })
      .def("__contains__", [](const Release& r, const std::string& n) { return r.find(n) != nullptr; })
      .def("__repr__", [](const Release& r) {
        return "Release(md5='" + r.md5() + "', models=" + std::to_string(r.models().size()) + ")";
      });

  py::class_<Server>(m, "Server", R"doc(
Serves every adapter of a release over HTTP/1.1 (Boost.Beast): MLflow's scoring protocol per model at
POST /models/{name}/invocations, POST /invocations/batch, GET /ping /health /version /models /metrics, and
POST /admin/release (bearer token) to switch releases atomically; with `shadow`, a second release's models
score the same rows off the response path (GET /shadow, POST /admin/shadow). `release` is a build-context folder, or
any name `resolver(name) -> folder` maps (an MD5, an alias).
)doc")
      .def(py::init([](const std::string& release, const std::string& host, std::uint16_t port, unsigned threads,
                       unsigned workers, std::optional<std::string> admin_token, std::string image,
                       std::size_t max_body_bytes, std::size_t max_header_bytes, std::size_t max_buffered_bytes,
                       std::size_t max_connections, std::size_t max_rows, double header_timeout, double read_timeout,
                       double idle_timeout, double drain_timeout,
                       std::optional<std::function<std::string(const std::string&)>> resolver, std::string shadow,
                       std::size_t shadow_queue) {
             ServerOptions o;
             o.host = host;
             o.port = port;
             o.threads = threads;
             o.workers = workers;
             o.max_buffered_bytes = max_buffered_bytes;
             if (admin_token) o.admin_token = *admin_token;
             o.image = std::move(image);
             o.max_body_bytes = max_body_bytes;
             o.max_header_bytes = max_header_bytes;
             o.max_connections = max_connections;
             o.max_rows = max_rows;
             o.shadow = std::move(shadow);
             o.shadow_queue = shadow_queue;
             auto ms = [](double s) {
               if (!(s > 0)) throw ConfigError("server timeouts must be positive seconds");
               return std::chrono::milliseconds(static_cast<std::int64_t>(s * 1000));
             };
             o.header_timeout = ms(header_timeout);
             o.read_timeout = ms(read_timeout);
             o.idle_timeout = ms(idle_timeout);
             o.drain_timeout = ms(drain_timeout);
             ReleaseResolver r;
             if (resolver) r = python_resolver(*resolver);
             return std::make_unique<Server>(release, std::move(o), std::move(r));
           }),
           py::arg("release"), py::kw_only(), py::arg("host") = defaults.host, py::arg("port") = defaults.port,
           py::arg("threads") = defaults.threads, py::arg("workers") = defaults.workers,
           py::arg("admin_token") = py::none(), py::arg("image") = "", py::arg("max_body_bytes") = defaults.max_body_bytes,
           py::arg("max_header_bytes") = defaults.max_header_bytes,
           py::arg("max_buffered_bytes") = defaults.max_buffered_bytes,
           py::arg("max_connections") = defaults.max_connections, py::arg("max_rows") = defaults.max_rows,
           py::arg("header_timeout") = seconds(defaults.header_timeout),
           py::arg("read_timeout") = seconds(defaults.read_timeout), py::arg("idle_timeout") = seconds(defaults.idle_timeout),
           py::arg("drain_timeout") = seconds(defaults.drain_timeout), py::arg("resolver") = py::none(),
           py::arg("shadow") = "", py::arg("shadow_queue") = defaults.shadow_queue)
      .def_static("defaults",
                  [] {
                    const ServerOptions o;
                    py::dict d;
                    d["threads"] = o.threads;
                    d["workers"] = o.workers;
                    d["max_body_bytes"] = o.max_body_bytes;
                    d["max_header_bytes"] = o.max_header_bytes;
                    d["max_buffered_bytes"] = o.max_buffered_bytes;
                    d["max_connections"] = o.max_connections;
                    d["max_rows"] = o.max_rows;
                    d["header_timeout"] = seconds(o.header_timeout);
                    d["read_timeout"] = seconds(o.read_timeout);
                    d["idle_timeout"] = seconds(o.idle_timeout);
                    d["drain_timeout"] = seconds(o.drain_timeout);
                    d["shadow_queue"] = o.shadow_queue;
                    return d;
                  },
                  "The default limits and timeouts (seconds) of the server, by keyword.")
      .def_property_readonly("port", &Server::port)
      .def_property_readonly("release", [](const Server& s) { return std::const_pointer_cast<Release>(s.release()); })
      .def("start", &Server::start, "Serve on background threads; returns at once.")
      .def("run", &Server::run, py::call_guard<py::gil_scoped_release>(),
           "Serve until SIGTERM/SIGINT (drain, then return) ; SIGHUP reloads the starting release.")
      .def("stop", &Server::stop, py::call_guard<py::gil_scoped_release>(), "Drain and stop.")
      .def("switch_to", &loading<&Server::switch_to>, py::arg("release"), "Load a release beside the current one and swap atomically (rollback too).")
      .def("reload",
           [](Server& s) {
             py::gil_scoped_release unlock;
             return std::const_pointer_cast<Release>(s.reload());
           })
      .def("switch_shadow", &loading<&Server::switch_shadow>, py::arg("release"), "Set the shadow release (scored off the response path) atomically; \"\" clears it.")
      .def_property_readonly("shadow", [](const Server& s) { return std::const_pointer_cast<Release>(s.shadow()); },
                             "The shadow release, or None.")
      .def("metrics_text", &Server::metrics_text)
      .def("__enter__", [](Server& s) -> Server& {
        s.start();
        return s;
      })
      .def("__exit__", [](Server& s, py::args) {
        py::gil_scoped_release unlock;
        s.stop();
      });
}

}  // namespace mlops::python
