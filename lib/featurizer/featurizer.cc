#include "mlops/featurizer.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "mlops/error.hpp"

namespace mlops {

namespace {
constexpr std::uint64_t kFnvOffset = 14695981039346656037ULL;
constexpr std::uint64_t kFnvPrime = 1099511628211ULL;
constexpr int kMaxDimension = 1 << 24;

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

Featurizer::Featurizer(int dimension, std::uint64_t seed, std::string text)
    : dimension_(dimension), seed_(seed), text_(std::move(text)) {
  if (dimension < 1 || dimension > kMaxDimension)
    throw ConfigError("text featurizer dimension must be in [1, 16777216], got " + std::to_string(dimension));
}

bool Featurizer::is_text(const nlohmann::json& settings) noexcept {
  if (!settings.is_object()) return false;
  auto it = settings.find("kind");
  return it != settings.end() && it->is_string() && it->get_ref<const std::string&>() == kHashedWords;
}

Featurizer Featurizer::from_settings(const nlohmann::json& settings) {
  if (!is_text(settings))
    throw ConfigError("featurizer settings " + settings.dump() + " are not a text featurizer (kind " + kHashedWords + ")");
  auto dim = settings.find("dimension");
  if (dim == settings.end() || !dim->is_number_integer())
    throw ConfigError("featurizer settings: dimension must be an integer, got " + settings.dump());
  const auto d = dim->get<std::int64_t>();
  if (d < 1 || d > kMaxDimension)
    throw ConfigError("text featurizer dimension must be in [1, 16777216], got " + std::to_string(d));
  std::uint64_t seed = 0;
  if (auto s = settings.find("seed"); s != settings.end()) {
    if (!s->is_number_integer() || (s->is_number_integer() && !s->is_number_unsigned() && s->get<std::int64_t>() < 0))
      throw ConfigError("featurizer settings: seed must be a non-negative integer, got " + s->dump());
    seed = s->get<std::uint64_t>();
  }
  std::string text;
  if (auto t = settings.find("text"); t != settings.end() && !t->is_null()) {
    if (!t->is_string()) throw ConfigError("featurizer settings: text must be a column name, got " + t->dump());
    text = t->get<std::string>();
  }
  return Featurizer(static_cast<int>(d), seed, std::move(text));
}

void Featurizer::transform(std::string_view text, std::span<float> out) const {
  if (out.size() != static_cast<std::size_t>(dimension_))
    throw DataError("featurizer: output has " + std::to_string(out.size()) + " values, dimension is " +
                    std::to_string(dimension_));
  std::fill(out.begin(), out.end(), 0.0f);
  const std::uint64_t base = mix(kFnvOffset ^ seed_);
  auto add = [&](std::uint64_t h) {
    const std::uint64_t m = mix(h);
    const auto bucket = static_cast<std::size_t>(m % static_cast<std::uint64_t>(dimension_));
    out[bucket] += (m >> 63) ? -1.0f : 1.0f;
  };
  const std::uint64_t unigram = fnv(base, "u\x1f");
  const std::uint64_t bigram = fnv(base, "b\x1f");
  std::string word, prev;
  bool have_prev = false;
  auto flush = [&] {
    if (word.empty()) return;
    add(fnv(unigram, word));
    if (have_prev) add(fnv(fnv(fnv(bigram, prev), "\x1f"), word));
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

std::vector<float> Featurizer::transform(std::span<const std::string> texts) const {
  const auto d = static_cast<std::size_t>(dimension_);
  std::vector<float> X(texts.size() * d);
  for (std::size_t i = 0; i < texts.size(); ++i) transform(texts[i], std::span<float>(X.data() + i * d, d));
  return X;
}

nlohmann::json Featurizer::settings() const {
  nlohmann::json j{{"kind", kHashedWords}, {"dimension", dimension_}, {"seed", seed_}};
  if (!text_.empty()) j["text"] = text_;
  return j;
}

}  // namespace mlops
