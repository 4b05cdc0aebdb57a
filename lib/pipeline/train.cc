// Pipeline::train: one shard of a plan, fitted in one batch and recorded in MLflow by several threads.
#include <chrono>
#include <exception>
#include <map>
#include <mutex>
#include <optional>

#include "mlops/error.hpp"
#include "mlops/pipeline.hpp"
#include "mlops/tags.hpp"
#include "pipeline/internal.hpp"

namespace mlops {

using namespace pipeline;

namespace {

// Records one trained adapter: a run (params, per-epoch metrics, dataset input, model directory), a
// registered version with the lineage tags, and the staging alias. Never throws: a failure is reported.
TrainedItem record_adapter(MlflowTracker& tracker, const PipelineOptions& options, const CatalogEntry& e,
                           const TrainedAdapter& t, const AdapterSpec& spec, const std::string& fingerprint,
                           const std::string& data_commit, const std::string& code) {
  TrainedItem out;
  out.name = t.name;
  std::optional<Run> run;
  bool registered = false;
  try {
    run = tracker.start_run(options.experiment, t.name,
                            {{tags::kAdapter, t.name},
                             {tags::kFingerprint, fingerprint},
                             {tags::kCodeCommit, code},
                             {tags::kGitCommit, code},
                             {tags::kDevice, t.device}});
    out.run_id = run->id();
    // Params, every epoch's metrics and the lineage tags go to the server as one batch, and all of the
    // run is there before a version points at it; it ends FINISHED once the adapter is fully recorded.
    run->hold_logging();
    run->log_params(spec.params());
    for (const auto& m : t.history.epochs)
      run->log_metrics({{"loss", m.loss}, {"val_loss", m.val_loss}, {"val_accuracy", m.val_accuracy}}, m.epoch);
    run->log_dataset(spec.dataset);
    run->log_adapter(t, tags::kModelArtifactPath);
    run->flush();
    const std::map<std::string, std::string> version_tags = {
        {tags::kFingerprint, fingerprint}, {tags::kDataCommit, data_commit},
        {tags::kCodeCommit, code},         {tags::kParams, params_text(e)},
        {tags::kSlice, slice_text(e)},     {tags::kRows, std::to_string(spec.dataset.rows())},
        {tags::kDataUri, spec.dataset.lineage().uri}};  // plan() names the source of a foreign version
    ModelVersion v = tracker.register_model(t.name, *run, tags::kModelArtifactPath, version_tags);
    registered = true;
    tracker.set_alias(t.name, options.staging_alias, v.version);
    run->end(RunStatus::Finished);
    out.status = "trained";
    out.version = v.version;
    if (!t.history.epochs.empty()) out.val_accuracy = t.history.epochs.back().val_accuracy;
  } catch (const std::exception& err) {
    out.status = "failed";
    out.error = err.what();
    if (run && !run->ended()) {
      try {
        // A registered run is complete (a re-run reuses its version and sets the alias); any other failed.
        run->end(registered ? RunStatus::Finished : RunStatus::Failed);
      } catch (const std::exception&) {
        // The server is gone; the run stays RUNNING and the next train() of this shard settles it.
      }
    }
  }
  return out;
}

}  // namespace

// An earlier train() of these adapters that was killed while recording left its run RUNNING. A run
// that got a registered version is complete (everything is sent before registration): it is ended
// FINISHED and its version reused. Any other never got a version: it is ended KILLED and the adapter is
// trained again.
void Pipeline::settle_interrupted_runs(const std::map<std::string, std::string>& fingerprints,
                                       const std::map<std::string, std::vector<ModelVersion>>& versions,
                                       TrainReport& report) {
  std::map<std::string, std::string> name_of;  // fingerprint -> adapter
  for (const auto& [name, fp] : fingerprints) name_of[fp] = name;
  const std::string exp = tracker_.experiment_id(options_.experiment);
  for (const auto& run : tracker_.search_runs({exp}, "attributes.status = 'RUNNING'", 1000)) {
    auto it = name_of.find(run.tag(tags::kFingerprint));
    if (it == name_of.end()) continue;
    bool registered = false;
    if (auto v = versions.find(it->second); v != versions.end())
      for (const auto& mv : v->second) registered = registered || (mv.run_id == run.run_id && mv.status == "READY");
    tracker_.end_run(run.run_id, registered ? RunStatus::Finished : RunStatus::Killed);
    if (!registered) report.abandoned_runs.push_back(run.run_id);
  }
}

TrainReport Pipeline::train(const Plan& plan, int shard_index, int shard_count, const TrainProgress& progress) {
  TrainReport report;
  report.commit = plan.commit;
  report.shard_index = shard_index;
  report.shard_count = shard_count;
  const auto mine = plan.shard(shard_index, shard_count);
  if (mine.empty()) return report;
  auto versions = version_index(tracker_, catalog_);
  const std::string code = plan.code_commit.empty() ? options_.code_commit : plan.code_commit;
  std::map<std::string, std::string> fingerprints;  // adapter -> fingerprint, for the whole shard
  for (const PlanItem* item : mine) fingerprints[item->name] = fingerprint(catalog_.at(item->name), plan.commit, code);
  settle_interrupted_runs(fingerprints, versions, report);

  using Clock = std::chrono::steady_clock;
  auto seconds_since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
  auto t0 = Clock::now();
  // A READY version with the same fingerprint is reused; every other adapter's rows are read, slices
  // `column = ?` of one table in one scan.
  auto reusable = [&](const CatalogEntry& e) {
    const ModelVersion* existing = nullptr;
    for (const auto& v : versions[e.name])
      if (tag_of(v, tags::kFingerprint) == fingerprints.at(e.name) && v.status == "READY") existing = &v;
    return existing;
  };
  std::vector<const CatalogEntry*> to_read;
  for (const PlanItem* item : mine)
    if (reusable(catalog_.at(item->name)) == nullptr) to_read.push_back(&catalog_.at(item->name));
  auto read_together = read_slices(source_, to_read, plan.commit);
  std::vector<AdapterSpec> specs;
  std::size_t looked_at = 0;
  for (const PlanItem* item : mine) {
    if (progress) progress("load", looked_at++, mine.size());
    const CatalogEntry& e = catalog_.at(item->name);
    TrainedItem out;
    out.name = e.name;
    const ModelVersion* existing = reusable(e);
    try {
      if (existing != nullptr) {
        tracker_.set_alias(e.name, options_.staging_alias, existing->version);
        out.status = "reused";
        out.version = existing->version;
        out.run_id = existing->run_id;
        report.items.push_back(std::move(out));
        continue;
      }
      auto read = read_together.find(e.name);
      Dataset ds = read != read_together.end() ? std::move(read->second) : source_.dataset(dataset_spec(e, plan.commit));
      AdapterSpec spec = adapter_spec(e, std::move(ds), code);
      spec.validate();
      specs.push_back(std::move(spec));
    } catch (const Error& err) {
      out.status = "failed";
      out.error = err.what();
      report.items.push_back(std::move(out));
    }
  }

  if (progress) progress("load", mine.size(), mine.size());
  report.load_seconds = seconds_since(t0);
  t0 = Clock::now();
  std::vector<TrainedAdapter> trained;
  if (!specs.empty()) {
    ProgressCallback on_steps;
    if (progress) on_steps = [&](std::size_t done, std::size_t total) { progress("fit", done, total); };
    trained = trainer_.fit(specs, {}, on_steps);
  }
  report.fit_seconds = seconds_since(t0);
  t0 = Clock::now();

  // Recording is I/O against the tracking server: adapters are recorded by several threads at once.
  // Every trained adapter is recorded even when the progress callback fails; its error comes after.
  std::vector<TrainedItem> recorded(trained.size());
  std::mutex progress_mutex;
  std::size_t recorded_count = 0;
  std::exception_ptr progress_error;
  auto report_recorded = [&](std::size_t add) {
    std::lock_guard lock(progress_mutex);
    recorded_count += add;
    if (!progress || progress_error) return;
    try {
      progress("record", recorded_count, trained.size());
    } catch (...) {
      progress_error = std::current_exception();
    }
  };
  if (!trained.empty()) report_recorded(0);
  parallel_for(trained.size(), options_.record_threads, [&](std::size_t k) {
    recorded[k] = record_adapter(tracker_, options_, catalog_.at(trained[k].name), trained[k], specs[k],
                                 fingerprints.at(trained[k].name), plan.commit, code);
    report_recorded(1);
    return true;
  });
  if (progress_error) std::rethrow_exception(progress_error);
  for (auto& item : recorded) report.items.push_back(std::move(item));
  report.record_seconds = seconds_since(t0);
  std::sort(report.items.begin(), report.items.end(),
            [](const TrainedItem& a, const TrainedItem& b) { return a.name < b.name; });
  return report;
}

}  // namespace mlops
