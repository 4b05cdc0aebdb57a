// Hashed word unigram + bigram features for a text column (internal).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include <nlohmann/json.hpp>

namespace mlops::detail {

/// Words are maximal runs of ASCII letters/digits or non-ASCII bytes, ASCII lowercased. Each word and
/// each pair of adjacent words is hashed (FNV-1a 64 with `seed` mixed in) to a bucket in [0, dimension)
/// and a sign; the row is the signed bucket counts, L2-normalised (all zeros when the text has no words).
class HashingFeaturizer {
 public:
  /// @throws ConfigError unless 1 <= dimension <= 2^24
  HashingFeaturizer(int dimension, std::uint64_t seed);
  [[nodiscard]] int dimension() const noexcept { return dimension_; }
  /// Writes the features of `text` into `out` (size dimension()).
  void transform(std::string_view text, std::span<float> out) const;
  /// {"kind": "hashed-word-unigram-bigram", "dimension": d, "seed": s}
  [[nodiscard]] nlohmann::json settings() const;

 private:
  int dimension_;
  std::uint64_t seed_;
};

}  // namespace mlops::detail
