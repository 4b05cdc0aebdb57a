/// @file catalog.hpp
/// The adapters a pipeline trains and the slice of data each one learns from.
///
/// A catalog file (JSON or TOML) has optional `defaults` and a list of adapters; every adapter field
/// not given takes the default's value (gates: see GateSettings):
/// ```toml
/// [defaults]
/// table = "tickets"
/// label = "intent"
/// text = "body"
/// epochs = 10
///
/// [[adapters]]
/// name = "customer-1"
/// where = "customer_id = ?"
/// params = [1]
/// ```
/// The same document as JSON: `{"defaults": {...}, "adapters": [{...}, ...]}`.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlops/hyperparameters.hpp"

namespace mlops {

/// Settings of the built-in hashed unigram+bigram text featurizer (used when an adapter has `text`).
struct FeaturizerSettings {
  static constexpr std::int64_t kMaxDimension = 1'048'576;  ///< the largest dimension a catalog may ask for (2^20)
  std::int64_t dimension = 1024;  ///< hashed feature dimension, in [1, kMaxDimension]
  std::int64_t seed = 0;          ///< hash seed
  [[nodiscard]] nlohmann::json to_json() const;
  bool operator==(const FeaturizerSettings&) const = default;
};

/// How an adapter's candidates are evaluated and when one may replace its baseline. Catalog fields of the
/// same names (flat in the entry, defaults from `defaults` or the `*` row), checked when the catalog loads.
struct GateSettings {
  /// share of the slice's rows held out for evaluation (chosen by a hash of adapter name and primary key,
  /// never trained on), in [0, 0.9]; 0 turns evaluation rows, and so every gate but the baseline-free ones, off
  double eval_fraction = 0.2;
  double min_accuracy = 0;      ///< absolute floor of the candidate's accuracy, in [0, 1]
  double max_drop = 5;          ///< accuracy points the candidate may lose against its baseline, in [0, 100]
  std::int64_t min_eval_rows = 0;  ///< fewer evaluation rows than this: the candidate is held back
  /// two-sided level of the paired interval of the accuracy change; a candidate is held back only when the
  /// whole interval lies below -max_drop, so one row never flips the verdict of a small set. In [0.5, 0.999]
  double confidence = 0.95;
  /// A data ref (a Dolt tag or branch kept for a curated set) whose evaluation rows both versions are scored
  /// on, instead of the candidate's and the baseline's data commits. Empty: those two commits.
  std::string eval_ref;
  [[nodiscard]] nlohmann::json to_json() const;
  bool operator==(const GateSettings&) const = default;
};

/// One adapter: its name, its data slice and its hyperparameters.
struct CatalogEntry {
  std::string name;                   ///< unique; also the registered model name in MLflow
  std::string table;                  ///< table holding the rows
  std::string label;                  ///< label column
  std::vector<std::string> features;  ///< numeric feature columns (exclusive with `text`)
  std::string text;                   ///< text column, featurized (exclusive with `features`)
  std::string where;                  ///< SQL filter selecting the slice, `?` placeholders; empty = all rows
  nlohmann::json params = nlohmann::json::array();  ///< values bound to the placeholders of `where`
  Hyperparameters hyperparameters;  ///< the trainer's own type, validated by its own rules
  FeaturizerSettings featurizer;
  GateSettings gate;

  /// The entry as JSON (the catalog file's form, every field explicit).
  [[nodiscard]] nlohmann::json to_json() const;
  bool operator==(const CatalogEntry&) const = default;
};

/// A validated list of adapters, in file order, with unique names.
class Catalog {
 public:
  Catalog() = default;
  /// @throws DataError listing every invalid entry (one line each, naming the adapter and the field)
  explicit Catalog(std::vector<CatalogEntry> entries);

  /// Parses a catalog document. `origin` names it in messages (a file name, "adapters table").
  /// @throws DataError for malformed JSON/TOML, or listing every invalid entry
  static Catalog from_json(std::string_view text, const std::string& origin = "catalog");
  static Catalog from_toml(std::string_view text, const std::string& origin = "catalog");
  /// Parsed JSON already in memory (e.g. rows of a Dolt `adapters` table turned into objects).
  static Catalog from_json_value(const nlohmann::json& document, const std::string& origin = "catalog");
  /// Reads a `.json` or `.toml` file. @throws NotFoundError if missing, ConfigError for another extension
  static Catalog load(const std::filesystem::path& path);

  [[nodiscard]] const std::vector<CatalogEntry>& entries() const noexcept { return entries_; }
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }
  [[nodiscard]] bool empty() const noexcept { return entries_.empty(); }
  /// @throws NotFoundError naming the adapter
  [[nodiscard]] const CatalogEntry& at(std::string_view name) const;
  [[nodiscard]] const CatalogEntry* find(std::string_view name) const noexcept;
  /// `{"adapters": [...]}` with every field explicit; from_json_value(to_json()) gives an equal catalog.
  [[nodiscard]] nlohmann::json to_json() const;

 private:
  std::vector<CatalogEntry> entries_;
};

/// True for a plain SQL identifier: a letter or '_' then letters, digits or '_', at most 64 characters.
[[nodiscard]] bool is_sql_identifier(std::string_view name) noexcept;

}  // namespace mlops
