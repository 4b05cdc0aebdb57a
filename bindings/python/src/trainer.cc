#include <cstdio>
#include <optional>

#include "bind.hpp"
#include "core/text.hpp"
#include "mlops/adapter.hpp"
#include "mlops/error.hpp"
#include "mlops/trainer.hpp"

namespace mlops::python {

namespace {

// A borrowed C-contiguous float32 2-D array; TypeError otherwise (no silent conversion).
py::array_t<float> float_matrix(const py::handle& obj, const char* name) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + " must be a NumPy array, got " + py::str(py::type::of(obj)).cast<std::string>());
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (!arr.dtype().is(py::dtype::of<float>()))
    throw py::type_error(std::string(name) + " must have dtype float32, got " + py::str(arr.dtype()).cast<std::string>() +
                         " (convert with .astype(numpy.float32))");
  if (arr.ndim() != 2) throw py::type_error(std::string(name) + " must be 2-dimensional, got " + std::to_string(arr.ndim()));
  if (!(arr.flags() & py::array::c_style))
    throw py::type_error(std::string(name) + " must be C-contiguous (use numpy.ascontiguousarray)");
  return py::reinterpret_borrow<py::array_t<float>>(arr);
}

// Moves a vector into a NumPy array without copying (the capsule owns the vector).
template <typename T>
py::array owned_array(std::vector<T>&& v, std::vector<py::ssize_t> shape) {
  auto* holder = new std::vector<T>(std::move(v));
  py::capsule owner(holder, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array(py::dtype::of<T>(), shape, {}, holder->data(), owner);
}

std::span<const float> rows_of(const py::array_t<float>& X) {
  return {X.data(), static_cast<std::size_t>(X.size())};
}

// What an adapter predicts from: a float32 matrix (rows × features), or raw texts for a text adapter.
struct AdapterInput {
  std::optional<py::array_t<float>> X;
  std::vector<std::string> texts;
  [[nodiscard]] std::size_t rows() const { return X ? static_cast<std::size_t>(X->shape(0)) : texts.size(); }
};

bool is_pandas(const py::handle& obj, const char* type_name) {
  auto t = py::type::of(obj);
  return py::hasattr(t, "__module__") && py::str(t.attr("__module__")).cast<std::string>().rfind("pandas", 0) == 0 &&
         py::str(t.attr("__name__")).cast<std::string>() == type_name;
}

// scikit-learn's input rules for one adapter: a numeric 2-D array of the training width, or (text
// adapters) a list/array/Series of str or a DataFrame holding the training text column.
AdapterInput adapter_input(const Adapter& a, const py::handle& obj) {
  AdapterInput in;
  py::object x = py::reinterpret_borrow<py::object>(obj);
  if (is_pandas(x, "DataFrame")) {
    py::list columns = x.attr("columns").attr("tolist")();
    if (a.takes_text()) {
      const auto& col = a.text_featurizer().text();
      if (!col.empty() && columns.contains(py::str(col))) {
        in.texts = texts_of(x[py::str(col)], "column '" + col + "'");
        return in;
      }
      if (py::len(columns) == 1) {
        in.texts = texts_of(x[columns[0]], "the DataFrame's column");
        return in;
      }
      throw DataError("this adapter was trained on the text column '" + col + "'; the DataFrame has columns " +
                      py::str(columns).cast<std::string>());
    }
    x = x.attr("to_numpy")(py::arg("dtype") = py::module_::import("numpy").attr("float32"));
  } else if (is_pandas(x, "Series") || py::isinstance<py::list>(x) || py::isinstance<py::tuple>(x) ||
             py::isinstance<py::str>(x)) {
    if (a.takes_text()) {
      in.texts = texts_of(x, "X");
      return in;
    }
    if (py::isinstance<py::str>(x)) throw DataError("this adapter takes rows of " + std::to_string(a.features()) + " numbers, not text");
    x = py::module_::import("numpy").attr("asarray")(x);
  }
  if (py::isinstance<py::array>(x)) {
    auto arr = py::reinterpret_borrow<py::array>(x);
    const char kind = arr.dtype().kind();
    if (kind == 'U' || kind == 'O' || kind == 'S') {
      if (!a.takes_text()) (void)a.text_featurizer();  // throws: a numeric adapter refuses text
      in.texts = texts_of(arr, "X");
      return in;
    }
    if (kind == 'f' || kind == 'i' || kind == 'u' || kind == 'b')
      if (!arr.dtype().is(py::dtype::of<float>()) || !(arr.flags() & py::array::c_style))
        if (!py::isinstance<py::array>(obj))  // converted here from a DataFrame or list: make it float32
          x = py::module_::import("numpy").attr("ascontiguousarray")(arr, py::arg("dtype") = "float32");
  }
  in.X = float_matrix(x, "X");
  if (static_cast<std::size_t>(in.X->shape(1)) != a.features())
    throw DataError("adapter: field X has " + std::to_string(in.X->shape(1)) + " columns, the adapter was trained on " +
                    std::to_string(a.features()) + " features");
  return in;
}

py::array proba(const Adapter& a, const py::handle& obj) {
  auto in = adapter_input(a, obj);
  const auto rows = in.rows();
  std::vector<float> p;
  {
    py::gil_scoped_release release;
    p = in.X ? a.predict_proba(rows_of(*in.X), rows) : a.predict_proba(std::span<const std::string>(in.texts));
  }
  return owned_array(std::move(p), {static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(a.num_classes())});
}

// A Python integer (or anything with __index__, such as a NumPy integer) as a 64-bit hyperparameter;
// ConfigError for another type or a value outside 64 bits (the range check is Hyperparameters').
std::int64_t integer_arg(const py::handle& v, const AdapterSpec& s, const char* field) {
  const std::string who = "adapter " + detail::quote_for_message(s.name) + ": field '" + field + "': ";
  if (PyBool_Check(v.ptr()) || !PyIndex_Check(v.ptr()))
    throw ConfigError(who + "must be an integer, got " +
                      py::str(py::type::of(v).attr("__name__")).cast<std::string>());
  int overflow = 0;
  auto index = py::reinterpret_steal<py::object>(PyNumber_Index(v.ptr()));
  if (!index) throw py::error_already_set();
  const long long x = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
  if (overflow != 0)
    throw ConfigError(who + py::str(index).cast<std::string>() +
                      " is outside the 64-bit range (the trainer's limits are far smaller)");
  if (x == -1 && PyErr_Occurred()) throw py::error_already_set();
  return x;
}

Optimizer optimizer_arg(const std::string& name, const AdapterSpec& s) {
  if (auto o = parse_optimizer(name)) return *o;
  std::string choices;
  for (const auto& n : optimizer_names()) choices += (choices.empty() ? "'" : ", '") + n + "'";
  throw ConfigError("adapter " + detail::quote_for_message(s.name) + ": field 'optimizer': must be one of " + choices +
                    ", got " + detail::quote_for_message(name));
}

std::vector<std::int32_t> indices(const Adapter& a, const py::handle& obj) {
  auto in = adapter_input(a, obj);
  py::gil_scoped_release release;
  return in.X ? a.predict_indices(rows_of(*in.X), in.rows()) : a.predict_indices(std::span<const std::string>(in.texts));
}

// Labels typed like the training labels: int64 for integer labels, else an object array of str.
py::array labels(const Adapter& a, const std::vector<std::int32_t>& idx) {
  const auto n = static_cast<py::ssize_t>(idx.size());
  if (a.integer_labels()) {
    std::vector<std::int64_t> v;
    v.reserve(idx.size());
    for (auto i : idx) v.push_back(a.classes_json()[static_cast<std::size_t>(i)].get<std::int64_t>());
    return owned_array(std::move(v), {n});
  }
  std::vector<py::str> names(a.classes().begin(), a.classes().end());
  py::list out(idx.size());
  for (std::size_t r = 0; r < idx.size(); ++r) out[r] = names[static_cast<std::size_t>(idx[r])];
  return py::module_::import("numpy").attr("array")(out, "object");
}

py::dict metrics_dict(const EpochMetrics& m) {
  py::dict d;
  d["epoch"] = m.epoch;
  d["loss"] = m.loss;
  d["val_loss"] = m.val_loss;
  d["val_accuracy"] = m.val_accuracy;
  return d;
}

}  // namespace

void bind_trainer(py::module_& m) {
  py::class_<EpochMetrics>(m, "EpochMetrics", "Metrics of one epoch of one adapter (val_* are NaN without validation).")
      .def_readonly("epoch", &EpochMetrics::epoch, "1-based epoch number.")
      .def_readonly("loss", &EpochMetrics::loss, "Mean training loss of the epoch, with the L2 term.")
      .def_readonly("val_loss", &EpochMetrics::val_loss, "Mean cross-entropy on the validation rows.")
      .def_readonly("val_accuracy", &EpochMetrics::val_accuracy, "Share of validation rows classified correctly.")
      .def("to_dict", &metrics_dict)
      .def("__repr__", [](const EpochMetrics& e) {
        return "EpochMetrics(epoch=" + std::to_string(e.epoch) + ", loss=" + std::to_string(e.loss) +
               ", val_loss=" + std::to_string(e.val_loss) + ", val_accuracy=" + std::to_string(e.val_accuracy) + ")";
      });

  py::class_<History>(m, "History", "Per-epoch metrics of one adapter.")
      .def_readonly("epochs", &History::epochs, "EpochMetrics per epoch, in order.")
      .def_readonly("best_epoch", &History::best_epoch, "The epoch whose weights the adapter holds.")
      .def_readonly("stopped_early", &History::stopped_early)
      .def_property_readonly("loss", [](const History& h) { std::vector<double> v; for (auto& e : h.epochs) v.push_back(e.loss); return v; })
      .def_property_readonly("val_loss", [](const History& h) { std::vector<double> v; for (auto& e : h.epochs) v.push_back(e.val_loss); return v; })
      .def_property_readonly("val_accuracy", [](const History& h) { std::vector<double> v; for (auto& e : h.epochs) v.push_back(e.val_accuracy); return v; })
      .def("__len__", [](const History& h) { return h.epochs.size(); })
      .def("__repr__", [](const History& h) {
        std::string out = "History(epochs=" + std::to_string(h.epochs.size()) + ", best_epoch=" + std::to_string(h.best_epoch);
        if (!h.epochs.empty()) {
          char last[64];
          std::snprintf(last, sizeof last, ", val_accuracy=%.3f", h.epochs.back().val_accuracy);
          out += last;
        }
        return out + (h.stopped_early ? ", stopped_early=True)" : ")");
      });

  py::class_<Adapter>(m, "Adapter", R"doc(
A trained softmax classifier (hidden == 0) or one-hidden-layer ReLU MLP.

predict_proba(X) = softmax(X @ W + b) or softmax(relu(X @ W1 + b1) @ W2 + b2); X is float32 (rows, features).
Saved as safetensors (format "mlops.adapter.v1") with classes, featurizer, spec and lineage metadata.
)doc")
      .def(py::init([](std::size_t features, std::size_t hidden, const py::list& classes, const py::handle& weights,
                       const py::dict& featurizer, const py::dict& spec, const py::dict& lineage) {
             std::vector<std::string> cls;
             for (const auto& c : classes) cls.push_back(py::str(c).cast<std::string>());
             auto w = py::module_::import("numpy").attr("ascontiguousarray")(weights, py::arg("dtype") = "float32");
             auto arr = py::reinterpret_borrow<py::array_t<float>>(w);
             std::vector<float> v(arr.data(), arr.data() + arr.size());
             return Adapter(features, hidden, std::move(cls), std::move(v), py_to_json(featurizer), py_to_json(spec),
                            py_to_json(lineage));
           }),
           py::arg("features"), py::arg("hidden"), py::arg("classes"), py::arg("weights"), py::kw_only(),
           py::arg("featurizer") = py::dict(), py::arg("spec") = py::dict(), py::arg("lineage") = py::dict(),
           "An adapter from its weights: W, b (hidden == 0) or W1, b1, W2, b2 flattened and concatenated "
           "(row-major). featurizer: a Featurizer's settings for a text adapter.")
      .def_property_readonly("features", &Adapter::features)
      .def_property_readonly("hidden", &Adapter::hidden)
      .def_property_readonly("classes", [](const Adapter& a) { return json_to_py(a.classes_json()); },
                             "Class labels in probability-column order: ints when every training label was an "
                             "integer, else str.")
      .def_property_readonly("takes_text", &Adapter::takes_text, "True when the adapter predicts from raw text.")
      .def_property_readonly("text_featurizer",
                             [](const Adapter& a) -> py::object {
                               if (!a.takes_text()) return py::none();
                               return py::cast(a.text_featurizer());
                             },
                             "The Featurizer of a text adapter (None for numeric feature columns).")
      .def_property_readonly("featurizer", [](const Adapter& a) { return json_to_py(a.featurizer()); })
      .def_property_readonly("spec", [](const Adapter& a) { return json_to_py(a.spec()); })
      .def_property_readonly("lineage", [](const Adapter& a) { return json_to_py(a.lineage()); })
      .def("tensors", [](const Adapter& a) {
             py::dict out;
             for (const auto& name : a.tensor_names()) {
               std::vector<std::size_t> shape;
               auto t = a.tensor(name, &shape);
               std::vector<py::ssize_t> s(shape.begin(), shape.end());
               out[py::str(name)] = owned_array(std::vector<float>(t.begin(), t.end()), s);
             }
             return out;
           },
           "The weights as a dict of float32 arrays (copies): W, b or W1, b1, W2, b2.")
      .def("predict_proba", &proba, py::arg("X"),
           "Class probabilities, float32 (rows, classes). X: float32 (rows, features), or for a text adapter a "
           "list/array/Series of str or a DataFrame with the training text column.")
      .def("predict", [](const Adapter& a, const py::handle& X) { return labels(a, indices(a, X)); }, py::arg("X"),
           "Predicted labels, typed like the training labels (int64 array or object array of str). X as for "
           "predict_proba.")
      .def("predict_indices",
           [](const Adapter& a, const py::handle& X) {
             auto idx = indices(a, X);
             const auto n = static_cast<py::ssize_t>(idx.size());
             return owned_array(std::move(idx), {n});
           },
           py::arg("X"), "Class indices (int32) of the rows, into classes.")
      .def_static("predict_many",
                  [](const std::vector<const Adapter*>& adapters, const py::handle& Xh, unsigned threads) {
                    auto X = float_matrix(Xh, "X");
                    const auto rows = static_cast<std::size_t>(X.shape(0));
                    std::vector<std::vector<float>> out;
                    {
                      py::gil_scoped_release release;
                      out = Adapter::predict_proba_many(adapters, rows_of(X), rows, threads);
                    }
                    py::list result;
                    for (std::size_t i = 0; i < out.size(); ++i)
                      result.append(owned_array(std::move(out[i]), {static_cast<py::ssize_t>(rows),
                                                                    static_cast<py::ssize_t>(adapters[i]->num_classes())}));
                    return result;
                  },
                  py::arg("adapters"), py::arg("X"), py::arg("threads") = 0,
                  "Probabilities of the same rows under many adapters, computed in parallel.")
      .def("save",
           [](const Adapter& a, const std::filesystem::path& path) {
             py::gil_scoped_release release;
             a.save(path);
           },
           py::arg("path"), "Write the safetensors file atomically.")
      .def("to_bytes", [](const Adapter& a) { return py::bytes(a.to_bytes()); })
      .def_static("load",
                  [](const std::filesystem::path& path) {
                    py::gil_scoped_release release;
                    return Adapter::load(path);
                  },
                  py::arg("path"), "Read a file written by save(); IntegrityError if it is truncated or corrupted.")
      .def_static("from_bytes", [](const py::bytes& b) { return Adapter::from_bytes(std::string(b)); }, py::arg("data"))
      .def("__repr__", [](const Adapter& a) {
        return "Adapter(features=" + std::to_string(a.features()) + ", hidden=" + std::to_string(a.hidden()) +
               ", classes=" + std::to_string(a.num_classes()) + ")";
      });

  py::class_<AdapterSpec>(m, "AdapterSpec", R"doc(
What to train: one adapter's dataset and hyperparameters.

Every hyperparameter is checked when the spec is made (ConfigError naming the adapter, the field and, for
a value too large, the trainer's limit); fit() checks them again together with the dataset.
)doc")
      .def(py::init([](std::string name, Dataset dataset, const py::handle& hidden, const py::handle& epochs,
                       const py::handle& batch_size, double learning_rate, double l2, double validation_fraction,
                       const std::string& optimizer, double momentum, const py::handle& patience,
                       std::optional<std::vector<double>> class_weights, std::string code_commit) {
             AdapterSpec s;
             s.name = std::move(name);
             s.dataset = std::move(dataset);
             s.hidden = integer_arg(hidden, s, "hidden");
             s.epochs = integer_arg(epochs, s, "epochs");
             s.batch_size = integer_arg(batch_size, s, "batch_size");
             s.learning_rate = learning_rate;
             s.l2 = l2;
             s.validation_fraction = validation_fraction;
             s.optimizer = optimizer_arg(optimizer, s);
             s.momentum = momentum;
             s.patience = integer_arg(patience, s, "patience");
             if (class_weights) s.class_weights = std::move(*class_weights);
             s.code_commit = std::move(code_commit);
             s.Hyperparameters::validate("adapter " + detail::quote_for_message(s.name));
             return s;
           }),
           py::kw_only(), py::arg("name"), py::arg("dataset"), py::arg("hidden") = 0, py::arg("epochs") = 10,
           py::arg("batch_size") = 256, py::arg("learning_rate") = 1e-3, py::arg("l2") = 1e-4,
           py::arg("validation_fraction") = 0.1, py::arg("optimizer") = "adam", py::arg("momentum") = 0.9,
           py::arg("patience") = 0, py::arg("class_weights") = py::none(), py::arg("code_commit") = "")
      .def_readwrite("name", &AdapterSpec::name)
      .def_readwrite("dataset", &AdapterSpec::dataset)
      .def_property("hidden", [](const AdapterSpec& s) { return s.hidden; },
                    [](AdapterSpec& s, const py::handle& v) { s.hidden = integer_arg(v, s, "hidden"); })
      .def_property("epochs", [](const AdapterSpec& s) { return s.epochs; },
                    [](AdapterSpec& s, const py::handle& v) { s.epochs = integer_arg(v, s, "epochs"); })
      .def_property("batch_size", [](const AdapterSpec& s) { return s.batch_size; },
                    [](AdapterSpec& s, const py::handle& v) { s.batch_size = integer_arg(v, s, "batch_size"); })
      .def_readwrite("learning_rate", &AdapterSpec::learning_rate)
      .def_readwrite("l2", &AdapterSpec::l2)
      .def_readwrite("validation_fraction", &AdapterSpec::validation_fraction)
      .def_property("optimizer", [](const AdapterSpec& s) { return std::string(to_string(s.optimizer)); },
                    [](AdapterSpec& s, const std::string& v) { s.optimizer = optimizer_arg(v, s); })
      .def_readwrite("momentum", &AdapterSpec::momentum)
      .def_property("patience", [](const AdapterSpec& s) { return s.patience; },
                    [](AdapterSpec& s, const py::handle& v) { s.patience = integer_arg(v, s, "patience"); })
      .def_readwrite("class_weights", &AdapterSpec::class_weights)
      .def_readwrite("code_commit", &AdapterSpec::code_commit)
      .def("params", &AdapterSpec::params, "Hyperparameters as a flat dict of strings (deterministic).")
      .def("validate", &AdapterSpec::validate)
      .def("__repr__", [](const AdapterSpec& s) {
        return "AdapterSpec(name='" + s.name + "', rows=" + std::to_string(s.dataset.rows()) +
               ", hidden=" + std::to_string(s.hidden) + ", epochs=" + std::to_string(s.epochs) + ")";
      });

  py::class_<TrainedAdapter>(m, "TrainedAdapter", "The result of training one adapter.")
      .def_readonly("name", &TrainedAdapter::name)
      .def_readonly("adapter", &TrainedAdapter::adapter)
      .def_readonly("history", &TrainedAdapter::history)
      .def_readonly("device", &TrainedAdapter::device)
      .def_readonly("notes", &TrainedAdapter::notes,
                    "What the backend wants you to know that is not an error (e.g. a GPU step run without a CUDA "
                    "graph, or sub-groups); empty on the CPU.")
      .def_property_readonly("lineage", [](const TrainedAdapter& t) { return json_to_py(t.lineage); })
      .def_property_readonly("params", [](const TrainedAdapter& t) {
        py::dict d;
        const auto& spec = t.adapter.spec();
        for (auto it = spec.begin(); it != spec.end(); ++it)
          if (it.key() != "name") d[py::str(it.key())] = json_to_py(it.value());
        return d;
      })
      .def("__repr__", [](const TrainedAdapter& t) {
        std::string r = "TrainedAdapter(name='" + t.name + "', device='" + t.device + "', epochs=" +
                        std::to_string(t.history.epochs.size());
        if (!t.history.epochs.empty()) r += ", val_accuracy=" + std::to_string(t.history.epochs.back().val_accuracy);
        return r + ")";
      });

  py::class_<CudaTrainer>(m, "CudaTrainer", R"doc(
Trains many adapters together on a GPU (CUDA module) or the CPU (OpenBLAS, threads over adapters).

device: "auto" (a usable GPU, else the CPU; `device_reason` says why), "cpu", "cuda" or "cuda:N"
(DeviceError without a usable GPU). Same seed and thread count give bit-identical CPU weights; the GPU
repeats its own weights run after run. deterministic=False is refused (ConfigError): every backend is
deterministic. device_memory_limit: bytes of GPU memory a fit may use (0 = most of what is free).
)doc")
      .def(py::init([](const std::string& device, std::uint64_t seed, std::optional<unsigned> threads,
                       bool deterministic, bool progress, std::uint64_t device_memory_limit) {
             TrainerOptions o;
             o.device = device;
             o.seed = seed;
             o.threads = threads.value_or(0);
             o.deterministic = deterministic;
             o.progress = progress;
             o.device_memory_limit = device_memory_limit;
             return std::make_unique<CudaTrainer>(o);
           }),
           py::kw_only(), py::arg("device") = "auto", py::arg("seed") = 0, py::arg("threads") = py::none(),
           py::arg("deterministic") = true, py::arg("progress") = true, py::arg("device_memory_limit") = 0)
      .def_property_readonly("device", &CudaTrainer::device, "The chosen device, e.g. 'cpu' or 'cuda:0 (NVIDIA H100)'.")
      .def_property_readonly("device_reason", &CudaTrainer::device_reason, "Why this device was chosen.")
      .def_property_readonly("seed", [](const CudaTrainer& t) { return t.options().seed; })
      .def_property_readonly("threads", [](const CudaTrainer& t) { return t.options().threads; })
      .def_property_readonly("deterministic", [](const CudaTrainer& t) { return t.options().deterministic; })
      .def_property_readonly("progress", [](const CudaTrainer& t) { return t.options().progress; })
      .def_property_readonly("device_memory_limit", [](const CudaTrainer& t) { return t.options().device_memory_limit; })
      .def_static("planned_steps", &CudaTrainer::planned_steps, py::arg("specs"))
      .def(
          "fit",
          [](CudaTrainer& trainer, const std::vector<AdapterSpec>& specs, py::object on_epoch, std::optional<bool> progress) {
            const bool show = progress.value_or(trainer.options().progress);
            py::object bar = py::none();
            if (show)
              bar = py::module_::import("mlops.progress")
                        .attr("TrainingProgress")(CudaTrainer::planned_steps(specs), specs.size(), trainer.device());
            EpochCallback epoch_cb;
            if (!on_epoch.is_none() || !bar.is_none())
              epoch_cb = [&](const std::string& name, int epoch, const EpochMetrics& mtr) {
                py::gil_scoped_acquire gil;
                if (!bar.is_none()) bar.attr("epoch")(name, epoch, mtr);
                if (!on_epoch.is_none()) on_epoch(name, epoch, mtr);
              };
            // Progress also lets Ctrl-C (a pending signal) stop training.
            ProgressCallback progress_cb = [&](std::size_t done, std::size_t total) {
              py::gil_scoped_acquire gil;
              if (PyErr_CheckSignals() != 0) throw py::error_already_set();
              if (!bar.is_none()) bar.attr("update")(done, total);
            };
            std::vector<TrainedAdapter> out;
            try {
              py::gil_scoped_release release;
              out = trainer.fit(specs, epoch_cb, progress_cb);
            } catch (...) {
              if (!bar.is_none()) bar.attr("close")();
              throw;
            }
            if (!bar.is_none()) bar.attr("close")();
            return out;
          },
          py::arg("specs"), py::arg("on_epoch") = py::none(), py::arg("progress") = py::none(),
          "Validate every spec, then train all of them together. on_epoch(name, epoch, metrics) runs on this "
          "thread after each epoch of each adapter. Returns one TrainedAdapter per spec, in order.")
      .def("__repr__", [](const CudaTrainer& t) { return "CudaTrainer(device='" + t.device() + "')"; });
}

}  // namespace mlops::python
