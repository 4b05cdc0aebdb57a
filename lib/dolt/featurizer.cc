#include "dolt/featurizer.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "mlops/error.hpp"

namespace mlops::detail {

namespace {
constexpr std::uint64_t kFnvOffset = 14695981039346656037ULL;
constexpr std::uint64_t kFnvPrime = 1099511628211ULL;

std::uint64_t fnv(std::uint64_t h, std::string_view s) {
  for (unsigned char c : s) {
    h ^= c;
    h *= kFnvPrime;
  }
  return h;
}

// A final mix so that nearby hashes spread over buckets and sign bits.
std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

bool word_byte(unsigned char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80; }
}  // namespace

HashingFeaturizer::HashingFeaturizer(int dimension, std::uint64_t seed) : dimension_(dimension), seed_(seed) {
  if (dimension < 1 || dimension > (1 << 24))
    throw ConfigError("text featurizer dimension must be in [1, 16777216], got " + std::to_string(dimension));
}

void HashingFeaturizer::transform(std::string_view text, std::span<float> out) const {
  std::fill(out.begin(), out.end(), 0.0f);
  const std::uint64_t base = mix(kFnvOffset ^ seed_);
  auto add = [&](std::uint64_t h) {
    const std::uint64_t m = mix(h);
    const auto bucket = static_cast<std::size_t>(m % static_cast<std::uint64_t>(dimension_));
    out[bucket] += (m >> 63) ? -1.0f : 1.0f;
  };
  std::string word, prev;
  bool have_prev = false;
  auto flush = [&] {
    if (word.empty()) return;
    add(fnv(fnv(base, "u\x1f"), word));
    if (have_prev) add(fnv(fnv(fnv(fnv(base, "b\x1f"), prev), "\x1f"), word));
    prev.swap(word);
    have_prev = true;
    word.clear();
  };
  for (unsigned char c : text) {
    if (word_byte(c)) word += static_cast<char>((c >= 'A' && c <= 'Z') ? c + 32 : c);
    else flush();
  }
  flush();
  double norm = 0;
  for (float v : out) norm += static_cast<double>(v) * v;
  if (norm > 0) {
    const auto inv = static_cast<float>(1.0 / std::sqrt(norm));
    for (float& v : out) v *= inv;
  }
}

nlohmann::json HashingFeaturizer::settings() const {
  return {{"kind", "hashed-word-unigram-bigram"}, {"dimension", dimension_}, {"seed", seed_}};
}

}  // namespace mlops::detail
