/// @file manifest.hpp
/// A production release: the set of model versions it ships, named by the MD5 of its canonical JSON.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mlops {

/// What changed between two manifests (`a.diff(b)`: from a to b). Each list is sorted by name.
struct ManifestDiff {
  struct Entry {
    std::string name;
    std::int64_t version;
    bool operator==(const Entry&) const = default;
  };
  struct Change {
    std::string name;
    std::int64_t old_version;
    std::int64_t new_version;
    bool operator==(const Change&) const = default;
  };
  std::vector<Entry> added;     ///< in b only
  std::vector<Entry> removed;   ///< in a only (with a's version)
  std::vector<Change> changed;  ///< in both, with another version
  [[nodiscard]] bool empty() const noexcept { return added.empty() && removed.empty() && changed.empty(); }
  bool operator==(const ManifestDiff&) const = default;
};

/// An immutable map from model name to model version, with a canonical JSON form and hashes of it.
///
/// Names are model names (see model_name_problem); versions are integers ≥ 1.
/// The canonical form is byte-identical to Python's
/// `json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`.
class ReleaseManifest {
 public:
  using Entries = std::map<std::string, std::int64_t>;
  static constexpr std::size_t kMaxNameBytes = 255;  ///< a file name's limit (the build context's models/NAME)

  /// The empty release (`{}`).
  ReleaseManifest();
  /// @throws DataError naming the first bad entry (bad UTF-8, empty, too long, control character,
  ///         version < 1)
  explicit ReleaseManifest(Entries entries);

  /// Parses and validates a JSON object of name → integer version.
  /// @param expected_md5 when given, the MD5 of the canonical form must equal it (hex, any case)
  /// @throws DataError for a non-object document, a duplicate key, a non-integer, fractional or
  ///         out-of-range version, or bad JSON (with its byte offset)
  /// @throws IntegrityError when the MD5 differs from `expected_md5`
  static ReleaseManifest from_json(std::string_view text, std::optional<std::string_view> expected_md5 = {});

  /// Reads and verifies a file written by save().
  /// @throws NotFoundError if the file is missing; otherwise as from_json
  static ReleaseManifest load(const std::filesystem::path& path,
                              std::optional<std::string_view> expected_md5 = {});

  [[nodiscard]] const Entries& entries() const noexcept { return entries_; }
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }
  [[nodiscard]] bool empty() const noexcept { return entries_.empty(); }
  [[nodiscard]] bool contains(std::string_view name) const;
  /// @throws NotFoundError if `name` is not in the manifest
  [[nodiscard]] std::int64_t at(std::string_view name) const;

  /// A copy with `name` set to `version` (added or changed). @throws DataError as the constructor
  [[nodiscard]] ReleaseManifest with_version(const std::string& name, std::int64_t version) const;
  /// A copy without `name`. @throws NotFoundError if absent
  [[nodiscard]] ReleaseManifest without(std::string_view name) const;

  /// The canonical JSON: keys sorted by code point, no whitespace, UTF-8 unescaped, integer versions.
  [[nodiscard]] const std::string& to_json() const noexcept { return json_; }
  /// Lowercase hex MD5 of to_json(): the release id.
  [[nodiscard]] const std::string& md5() const noexcept { return md5_; }
  /// Lowercase hex SHA-256 of to_json().
  [[nodiscard]] const std::string& sha256() const noexcept { return sha256_; }

  /// `repository + ":" + md5()`.
  /// @param repository a Docker repository, e.g. "registry.example.com:5000/team/adapters"
  /// @throws DataError if `repository` does not follow Docker's reference grammar (or carries a tag)
  [[nodiscard]] std::string image_tag(std::string_view repository) const;

  /// What changed from this manifest to `other`.
  [[nodiscard]] ManifestDiff diff(const ReleaseManifest& other) const;

  /// Writes to_json() to `path` atomically (temporary file in the same folder, fsync, rename): readers
  /// see the old file or the whole new one, never a part.
  /// @throws ConfigError if the folder cannot be written
  void save(const std::filesystem::path& path) const;

  bool operator==(const ReleaseManifest& other) const noexcept { return entries_ == other.entries_; }

 private:
  void seal();
  Entries entries_;
  std::string json_;
  std::string md5_;
  std::string sha256_;
};

/// Checks a repository name against Docker's reference grammar (no tag, no digest).
/// @throws DataError saying which part is wrong
void validate_docker_repository(std::string_view repository);

/// Why `name` cannot be a model name, or nothing when it can. A model name is also an MLflow registered
/// model name, a directory in a build context and part of a Docker label, so it is: non-empty and not
/// only spaces, valid UTF-8 of at most 255 bytes (a file name), without control characters, '/', ':' or
/// '\\' (MLflow, file systems), '"' (Dockerfile quoting), not starting with ".." and not ".".
std::optional<std::string> model_name_problem(std::string_view name);

/// Checks one manifest entry. @throws DataError naming the entry
void validate_manifest_entry(std::string_view name, std::int64_t version);

}  // namespace mlops
