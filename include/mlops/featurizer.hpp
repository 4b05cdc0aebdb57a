/// @file featurizer.hpp
/// The text featurizer: turns raw text into the fixed-width float32 rows an adapter was trained on.
///
/// It belongs to the model: DoltSource uses it to build a dataset from a text column, the dataset's
/// lineage and every adapter trained on it store its settings, and the adapter rebuilds it from them at
/// prediction time, so the features of one text are the same bytes at training and at prediction time.
///
/// Kind "hashed-word-unigram-bigram": words are maximal runs of ASCII letters/digits or non-ASCII bytes,
/// ASCII-lowercased. Each word and each pair of adjacent words is hashed (FNV-1a 64 with `seed` mixed in)
/// to a bucket in [0, dimension) and a sign; a row is the signed bucket counts, L2-normalised (all zeros
/// when the text has no words).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace mlops {

/// Hashed word unigram + bigram features of a text column. A small value type; thread-safe to share.
class Featurizer {
 public:
  /// The only kind of text featurizer so far.
  static constexpr const char* kHashedWords = "hashed-word-unigram-bigram";

  /// @param dimension output width d, 1 <= d <= 2^24
  /// @param seed hash seed
  /// @param text the text column it was (or will be) applied to; stored in settings(), may be empty
  /// @throws ConfigError if the dimension is out of range
  explicit Featurizer(int dimension = 1024, std::uint64_t seed = 0, std::string text = {});

  /// Rebuilds a featurizer from settings() (an adapter's or a dataset lineage's `featurizer`).
  /// @throws ConfigError if `settings` is not a text featurizer of a known kind or a field is invalid
  [[nodiscard]] static Featurizer from_settings(const nlohmann::json& settings);
  /// True when `settings` describe a text featurizer (kind hashed-word-unigram-bigram).
  [[nodiscard]] static bool is_text(const nlohmann::json& settings) noexcept;

  [[nodiscard]] const char* kind() const noexcept { return kHashedWords; }
  [[nodiscard]] int dimension() const noexcept { return dimension_; }
  [[nodiscard]] std::uint64_t seed() const noexcept { return seed_; }
  /// The text column (empty when not known).
  [[nodiscard]] const std::string& text() const noexcept { return text_; }

  /// Writes the features of `text` into `out`.
  /// @throws DataError if out.size() != dimension()
  void transform(std::string_view text, std::span<float> out) const;
  /// The features of `texts`: texts.size() × dimension() row-major float32.
  [[nodiscard]] std::vector<float> transform(std::span<const std::string> texts) const;

  /// {"kind": "hashed-word-unigram-bigram", "dimension": d, "seed": s} plus "text": column when known.
  [[nodiscard]] nlohmann::json settings() const;

 private:
  int dimension_;
  std::uint64_t seed_;
  std::string text_;
};

}  // namespace mlops
