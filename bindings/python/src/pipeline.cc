#include <cstdio>
#include <map>

#include "bind.hpp"
#include "mlops/catalog.hpp"
#include "mlops/dolt.hpp"
#include "mlops/error.hpp"
#include "mlops/mlflow.hpp"
#include "mlops/pipeline.hpp"
#include "mlops/trainer.hpp"

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
      .def_property_readonly("gate", [](const CatalogEntry& e) { return json_to_py(e.gate.to_json()); },
                             "eval_fraction, min_accuracy, max_drop (points), min_eval_rows, confidence, eval_ref")
      .def("to_dict", &CatalogEntry::to_json)
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
      .def("to_dict", &Catalog::to_json)
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

  m.def("load_catalog_table", &load_catalog_table, py::arg("source"), py::arg("at") = "HEAD",
        py::arg("table") = "adapters", py::call_guard<py::gil_scoped_release>(),
        "A catalog versioned with the data: rows (name, config JSON); the row '*' holds the defaults.");

  py::class_<PlanItem>(m, "PlanItem", "One adapter's state in a plan.")
      .def_readonly("name", &PlanItem::name)
      .def_readonly("stale", &PlanItem::stale)
      .def_readonly("reasons", &PlanItem::reasons)
      .def_readonly("production_version", &PlanItem::production_version)
      .def_readonly("trained_commit", &PlanItem::trained_commit)
      .def_readonly("rows", &PlanItem::rows)
      .def_readonly("added", &PlanItem::added)
      .def_readonly("modified", &PlanItem::modified)
      .def_readonly("removed", &PlanItem::removed)
      .def_readonly("staging_version", &PlanItem::staging_version,
                    "The staged version that awaits a release (trained at this commit), else 0.")
      .def_readonly("awaiting_release", &PlanItem::awaiting_release,
                    "Trained at this commit and staged, newer than production: not stale, to be released.")
      .def("to_dict", &PlanItem::to_json)
      .def("__repr__", [](const PlanItem& i) {
        std::string state = i.stale ? "stale" : i.awaiting_release ? "awaiting release" : "up to date";
        return "PlanItem(name=" + py::repr(py::str(i.name)).cast<std::string>() + ", state='" + state +
               "', production_version=" + std::to_string(i.production_version) +
               (i.staging_version ? ", staging_version=" + std::to_string(i.staging_version) : std::string()) + ")";
      });

  auto copy_items = [](const std::vector<const PlanItem*>& items) {
    std::vector<PlanItem> out;
    for (const auto* i : items) out.push_back(*i);
    return out;
  };
  py::class_<Plan>(m, "Plan", "Which adapters need training at one data commit.")
      .def_readonly("ref", &Plan::ref)
      .def_readonly("commit", &Plan::commit)
      .def_readonly("code_commit", &Plan::code_commit)
      .def_readonly("items", &Plan::items)
      .def("stale", [copy_items](const Plan& p) { return copy_items(p.stale()); }, "The stale adapters.")
      .def("shard", [copy_items](const Plan& p, int index, int count) { return copy_items(p.shard(index, count)); },
           py::arg("index"), py::arg("count"),
           "The stale adapters of shard `index` of `count`, balanced by rows; the same on every machine.")
      .def("to_dict", &Plan::to_json)
      .def_static("from_dict", &Plan::from_json, py::arg("document"))
      .def("__repr__", [](const Plan& p) {
        return "Plan(commit='" + p.commit.substr(0, 12) + "', adapters=" + std::to_string(p.items.size()) +
               ", stale=" + std::to_string(p.stale().size()) + ")";
      });

  py::class_<TrainReport>(m, "TrainReport", "What train() did with each adapter of a shard.")
      .def_readonly("commit", &TrainReport::commit)
      .def_property_readonly("failed", &TrainReport::failed)
      .def_readonly("load_seconds", &TrainReport::load_seconds)
      .def_readonly("fit_seconds", &TrainReport::fit_seconds)
      .def_readonly("record_seconds", &TrainReport::record_seconds)
      .def_readonly("abandoned_runs", &TrainReport::abandoned_runs)
      .def("to_dict", &TrainReport::to_json)
      .def_property_readonly("items", [](const TrainReport& r) {
        py::list out;
        for (const auto& i : r.items) out.append(json_to_py(i.to_json()));
        return out;
      })
      .def("__repr__", [](const TrainReport& r) {
        std::map<std::string, std::size_t> by_status;
        for (const auto& i : r.items) ++by_status[i.status];
        auto count = [&](const char* s) { return std::to_string(by_status[s]); };
        char seconds[96];
        std::snprintf(seconds, sizeof seconds, "load=%.1fs, fit=%.1fs, record=%.1fs", r.load_seconds, r.fit_seconds,
                      r.record_seconds);
        return "TrainReport(commit='" + r.commit.substr(0, 12) + "', shard=" + std::to_string(r.shard_index) + "/" +
               std::to_string(r.shard_count) + ", trained=" + count("trained") + ", reused=" + count("reused") +
               ", failed=" + count("failed") + ", " + seconds + ")";
      });

  py::class_<ReleaseReport>(m, "ReleaseReport", "What release() or rollback() did.")
      .def_property_readonly("md5", [](const ReleaseReport& r) { return r.release.md5; })
      .def_property_readonly("image", [](const ReleaseReport& r) { return r.release.image; })
      .def_property_readonly("manifest", [](const ReleaseReport& r) { return r.release.manifest; })
      .def_property_readonly("previous", [](const ReleaseReport& r) { return r.release.previous; })
      .def_readonly("moved", &ReleaseReport::moved)
      .def_readonly("pending", &ReleaseReport::pending)
      .def_readonly("error", &ReleaseReport::error)
      .def_readonly("gate", &ReleaseReport::gate)
      .def_readonly("promoted", &ReleaseReport::promoted)
      .def_property_readonly("held_back", [](const ReleaseReport& r) { return json_to_py(r.to_json()["held_back"]); },
                             "Candidates that failed their gate and were not shipped: name, candidate_version, "
                             "kept_version (0: left out), verdict, reasons.")
      .def_property_readonly("warned", [](const ReleaseReport& r) { return json_to_py(r.to_json()["warned"]); },
                             "Candidates that failed their gate and shipped anyway (gate='warn').")
      .def_property_readonly("complete", &ReleaseReport::complete)
      .def("to_dict", &ReleaseReport::to_json)
      .def("__repr__", [](const ReleaseReport& r) {
        return "ReleaseReport(md5='" + r.release.md5 + "', moved=" + std::to_string(r.moved.size()) +
               ", pending=" + std::to_string(r.pending.size()) + ")";
      });

  py::class_<EvaluationReport>(m, "EvaluationReport",
                               "Every candidate scored against its baseline on the same evaluation rows.")
      .def_readonly("against", &EvaluationReport::against)
      .def_readonly("at", &EvaluationReport::at)
      .def_property_readonly("items", [](const EvaluationReport& r) { return json_to_py(r.to_json()["items"]); },
                             "One dict per catalog adapter: name, candidate_version, baseline_version, verdict, "
                             "passed, reasons, evaluations (per data commit: metrics of both, comparison), gate.")
      .def_property_readonly("failed", &EvaluationReport::failed)
      .def("item", [](const EvaluationReport& r, const std::string& name) {
            const EvaluationItem* i = r.find(name);
            if (i == nullptr) throw NotFoundError("adapter '" + name + "' is not in the evaluation report");
            return json_to_py(i->to_json());
          }, py::arg("name"))
      .def("to_dict", &EvaluationReport::to_json)
      .def("__repr__", [](const EvaluationReport& r) {
        return "EvaluationReport(against='" + r.against + "', items=" + std::to_string(r.items.size()) +
               ", failed=" + std::to_string(r.failed()) + ")";
      });

  py::class_<Pipeline>(m, "Pipeline", R"doc(
Plan, train, release and roll back a catalog of adapters.

State lives in Dolt (data, commits) and MLflow (runs, versions, aliases, releases); the Pipeline object
holds none, so any machine pointing at the same two places sees the same plan and releases.
)doc")
      .def(py::init([](DoltSource& source, MlflowTracker& tracker, CudaTrainer& trainer, Catalog catalog,
                       std::string experiment, std::string releases_experiment, std::string staging_alias,
                       std::string production_alias, std::string code_commit, bool retrain_on_code_change,
                       unsigned record_threads, double release_lease_seconds, double release_wait_seconds) {
             PipelineOptions o;
             if (!(release_lease_seconds > 0) || !(release_wait_seconds >= 0))
               throw ConfigError("release_lease_seconds must be > 0 and release_wait_seconds >= 0");
             o.release_lease_seconds = release_lease_seconds;
             o.release_wait_seconds = release_wait_seconds;
             o.experiment = std::move(experiment);
             o.releases_experiment = std::move(releases_experiment);
             o.staging_alias = std::move(staging_alias);
             o.production_alias = std::move(production_alias);
             o.code_commit = std::move(code_commit);
             o.retrain_on_code_change = retrain_on_code_change;
             if (record_threads == 0) throw ConfigError("record_threads must be at least 1");
             o.record_threads = record_threads;
             return std::make_unique<Pipeline>(source, tracker, trainer, std::move(catalog), std::move(o));
           }),
           py::arg("source"), py::arg("tracker"), py::arg("trainer"), py::arg("catalog"), py::kw_only(),
           py::arg("experiment") = tags::kAdaptersExperiment, py::arg("releases_experiment") = tags::kReleasesExperiment,
           py::arg("staging_alias") = tags::kStagingAlias, py::arg("production_alias") = tags::kProductionAlias,
           py::arg("code_commit") = "", py::arg("retrain_on_code_change") = false, py::arg("record_threads") = PipelineOptions{}.record_threads,
           py::arg("release_lease_seconds") = PipelineOptions{}.release_lease_seconds,
           py::arg("release_wait_seconds") = PipelineOptions{}.release_wait_seconds,
           py::keep_alive<1, 2>(), py::keep_alive<1, 3>(), py::keep_alive<1, 4>())
      .def_property_readonly_static(
          "default_record_threads", [](const py::object&) { return PipelineOptions{}.record_threads; },
          "record_threads when none is given (also the default of `mlops --mlflow-threads`)")
      .def_property_readonly("catalog", &Pipeline::catalog)
      .def("plan", &Pipeline::plan, py::arg("at") = "main", py::call_guard<py::gil_scoped_release>())
      .def(
          "train",
          [](Pipeline& p, const Plan& plan, std::pair<int, int> shard, py::object progress) {
            // progress: None, True (bars from mlops.progress) or a callable(stage, done, total).
            py::object fn = py::none();
            bool bars = false;
            if (py::isinstance<py::bool_>(progress)) {
              bars = progress.cast<bool>();
              if (bars) fn = py::module_::import("mlops.progress").attr("PipelineProgress")();
            } else if (!progress.is_none()) {
              if (!PyCallable_Check(progress.ptr()))
                throw ConfigError("progress must be None, a bool or a callable(stage, done, total)");
              fn = progress;
            }
            TrainProgress cb;
            if (!fn.is_none())
              cb = [&fn](const std::string& stage, std::size_t done, std::size_t total) {
                py::gil_scoped_acquire gil;
                if (PyErr_CheckSignals() != 0) throw py::error_already_set();  // Ctrl-C
                fn(stage, done, total);
              };
            auto close = [&] {
              if (bars) fn.attr("close")();
            };
            TrainReport report;
            try {
              py::gil_scoped_release release;
              report = p.train(plan, shard.first, shard.second, cb);
            } catch (...) {
              close();
              throw;
            }
            close();
            return report;
          },
          py::arg("plan"), py::arg("shard") = std::make_pair(0, 1), py::arg("progress") = py::none(),
          "Train the stale adapters of shard (index, count). progress: True for bars, or "
          "callable(stage, done, total) with stage 'load', 'fit' or 'record'.")
      .def(
          "release",
          [](Pipeline& p, const std::string& image, const std::string& alias, const std::string& gate) {
            const GateMode mode = parse_gate_mode(gate);
            py::gil_scoped_release release;
            return p.release(image, alias, mode);
          },
          py::kw_only(), py::arg("image"), py::arg("alias") = "", py::arg("gate") = "enforce",
          "Releases every candidate that passes its gate (gate='enforce'; 'warn' ships failing ones and lists "
          "them; 'off' does not evaluate).")
      .def("evaluate", &Pipeline::evaluate, py::arg("against") = "", py::arg("record") = true,
           py::call_guard<py::gil_scoped_release>(),
           "Scores each candidate (staging) and its baseline (`against`, default production) on the same "
           "held-out rows at both data commits, applies the gates and records the results in MLflow.")
      .def("preview", &Pipeline::preview, py::arg("plan"), py::arg("against") = "",
           py::call_guard<py::gil_scoped_release>(),
           "What training the plan's stale adapters would do: each fitted in memory at the plan's commit and "
           "evaluated against `against` (default production) as evaluate() does; records nothing, moves no alias.")
      .def("evaluate_at", &Pipeline::evaluate_at, py::arg("alias") = "", py::arg("at") = "main",
           py::call_guard<py::gil_scoped_release>(),
           "Drift: each model under `alias` (default production) scored on its held-out rows at `at` and at "
           "its training commit; the absolute gates apply at `at`. Records nothing.")
      .def(
          "rollback",
          [](Pipeline& p, std::optional<std::string> release, std::optional<std::string> model,
             std::optional<std::int64_t> version) {
            if (release && (model || version))
              throw ConfigError("rollback takes either release=MD5 or model=NAME with version=N, not both");
            py::gil_scoped_release unlock;
            if (release) return p.rollback_release(*release);
            if (model && version) return p.rollback_model(*model, *version);
            throw ConfigError("rollback needs release=MD5, or model=NAME with version=N");
          },
          py::kw_only(), py::arg("release") = py::none(), py::arg("model") = py::none(),
          py::arg("version") = py::none())
      .def("current_manifest", &Pipeline::current_manifest, py::call_guard<py::gil_scoped_release>())
      .def("releases",
           [](Pipeline& p) {
             nlohmann::json out = nlohmann::json::array();
             for (const auto& r : p.releases()) out.push_back(r.to_json());
             return out;
           },
           py::call_guard<py::gil_scoped_release>(), "Recorded releases, newest first, as dicts.")
      .def("diff_releases", &Pipeline::diff_releases, py::arg("a"), py::arg("b"),
           py::call_guard<py::gil_scoped_release>())
      .def(
          "compare_releases",
          [](Pipeline& p, const std::string& a, const std::string& b) { return p.compare_releases(a, b).to_json(); },
          py::arg("a"), py::arg("b"), py::call_guard<py::gil_scoped_release>(),
          "diff_releases with, per changed model, the metric changes its recorded evaluation measured, as a dict.")
      .def(
          "lineage",
          [](Pipeline& p, const std::string& name, const py::object& version) {
            std::string v = py::str(version).cast<std::string>();
            py::gil_scoped_release release;
            return p.lineage(name, v);
          },
          py::arg("name"), py::arg("version") = "production")
      .def(
          "write_build_context",
          [](Pipeline& p, const std::filesystem::path& dir, const std::string& release,
             const std::optional<std::filesystem::path>& wheel, const std::vector<std::filesystem::path>& wheels,
             const std::string& base_image) {
            return p.write_build_context(dir, release, BuildContextOptions{wheel.value_or(""), wheels, base_image});
          },
          py::arg("directory"), py::arg("release") = "", py::kw_only(), py::arg("wheel") = py::none(),
          py::arg("wheels") = std::vector<std::filesystem::path>{}, py::arg("base_image") = "",
          py::call_guard<py::gil_scoped_release>(),
          "Writes the release's Docker build context; the image installs `wheel` and `wheels` from it, pinned by "
          "hash. `mlops.build_context.write_build_context` finds the wheel and downloads the dependencies. "
          "Without `wheel`: the release folder only (manifest, lineage, models), as `mlops serve DIR` reads it.");
}

}  // namespace mlops::python
