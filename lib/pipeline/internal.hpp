// Internals of the pipeline shared by its source files: catalog entries as trainer and reader inputs,
// the texts that decide staleness, the model-version index, the release records and a small thread pool.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/parallel.hpp"
#include "mlops/adapter.hpp"
#include "mlops/catalog.hpp"
#include "mlops/dolt.hpp"
#include "mlops/error.hpp"
#include "mlops/evaluation.hpp"
#include "mlops/mlflow.hpp"
#include "mlops/pipeline.hpp"
#include "mlops/trainer.hpp"

namespace mlops::pipeline {

/// detail::parallel_for with at least one thread (a thread count of 0 means 1 here, as in the options).
template <class Fn>
void parallel_for(std::size_t n, unsigned threads, Fn&& fn) {
  detail::parallel_for(n, std::max(threads, 1U), std::forward<Fn>(fn));
}

/// Milliseconds since the epoch.
std::int64_t now_ms();
/// The first 12 characters of a commit hash, for messages and labels.
std::string short_hash(const std::string& h);

/// A catalog entry's filter parameters as SQL values. @throws DataError for an array or object
std::vector<SqlValue> sql_params(const nlohmann::json& params);
/// What DoltSource::dataset reads for entry `e` at `commit`: its training rows by default, or its evaluation
/// rows (held out by a hash of adapter name and primary key when its eval_fraction is above 0).
DatasetSpec dataset_spec(const CatalogEntry& e, const std::string& commit, HoldoutSide side = HoldoutSide::Train);
/// The datasets of the entries whose slice is `column = ?` (one value), read with one DoltSource::datasets
/// scan per table and way of reading, by adapter name; each is exactly its own dataset() read. Entries of
/// another slice form, alone in their group, sharing a held-out slice with another adapter, or in a group
/// whose scan fails are left out (read each alone).
std::map<std::string, Dataset> read_slices(DoltSource& source, const std::vector<const CatalogEntry*>& entries,
                                           const std::string& commit, HoldoutSide side = HoldoutSide::Train);
/// What the trainer fits for entry `e` on `dataset`.
AdapterSpec adapter_spec(const CatalogEntry& e, Dataset dataset, const std::string& code_commit);
/// The hyperparameters exactly as recorded (tag mlops.params): a change makes the adapter stale.
std::string params_text(const CatalogEntry& e);
/// What selects and shapes the rows (tag mlops.slice): a change makes the adapter stale.
std::string slice_text(const CatalogEntry& e);
/// SHA-256 of adapter, data commit, code commit, hyperparameters and slice (tag mlops.fingerprint).
std::string fingerprint(const CatalogEntry& e, const std::string& data_commit, const std::string& code_commit);

/// The value of tag `key` of a model version, empty when it has none.
std::string tag_of(const ModelVersion& v, const char* key);

/// Every model version of the catalog's adapters, by model name, with their aliases.
using VersionIndex = std::map<std::string, std::vector<ModelVersion>>;
VersionIndex version_index(MlflowTracker& tracker, const Catalog& catalog);
/// The version that `alias` points at, or nullptr.
const ModelVersion* with_alias(const std::vector<ModelVersion>& versions, const std::string& alias);

/// The adapter of a registered model version, read from its artifacts. @throws the tracker's errors, DataError
Adapter load_model(MlflowTracker& tracker, const ModelVersion& v);
/// Reads the evaluation rows of entries[i] at each commit of `wanted` (commit -> indices into `entries`), the
/// slices `column = ?` of one table in one scan and the rest one by one, and calls `use(i, commit, rows)`. An
/// Error from reading one entry's rows or from `use` goes to `failed(i, error)`; the others go on.
void for_evaluation_rows(DoltSource& source, const std::vector<const CatalogEntry*>& entries,
                         const std::map<std::string, std::vector<std::size_t>>& wanted,
                         const std::function<void(std::size_t, const std::string&, const Dataset&)>& use,
                         const std::function<void(std::size_t, const Error&)>& failed);

/// The absolute gates (min_eval_rows, min_accuracy) on one model's metrics: a reason per failure, each
/// ending in `where` followed by the limit (empty when both hold).
std::vector<std::string> floor_failures(const GateSettings& g, const ClassificationMetrics& m, const std::string& where);

/// The release runs of `experiment`, newest first: tags only, no manifest read.
std::vector<RunInfo> release_runs(MlflowTracker& tracker, const std::string& experiment);
/// The release recorded by `run`, with its manifest read from the run's artifacts.
ReleaseRecord record_from_run(MlflowTracker& tracker, const RunInfo& run);

}  // namespace mlops::pipeline
