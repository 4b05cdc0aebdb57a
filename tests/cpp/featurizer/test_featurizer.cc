#include <doctest/doctest.h>

#include <openssl/sha.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "mlops/adapter.hpp"
#include "mlops/error.hpp"
#include "mlops/featurizer.hpp"

using mlops::Adapter;
using mlops::Featurizer;

TEST_CASE("hashed unigram+bigram features: L2-normalised, deterministic, seed-dependent, case-folded") {
  Featurizer f(64, 7);
  std::vector<float> a(64), b(64), c(64), empty(64);
  f.transform("The quick brown fox", a);
  f.transform("the QUICK brown fox!", b);
  Featurizer g(64, 8);
  g.transform("The quick brown fox", c);
  double norm = 0;
  for (float v : a) norm += v * v;
  CHECK(std::fabs(norm - 1.0) < 1e-5);
  CHECK(a == b);
  CHECK(a != c);
  f.transform("  ...  ", empty);
  for (float v : empty) CHECK(v == 0.0f);
  // Word order matters through bigrams.
  std::vector<float> d(64);
  f.transform("fox brown quick the", d);
  CHECK(a != d);
  CHECK(f.settings()["dimension"] == 64);
  CHECK_THROWS_AS(Featurizer(0, 0), mlops::ConfigError);
  std::vector<float> wrong(63);
  CHECK_THROWS_AS(f.transform("x", wrong), mlops::DataError);
}

TEST_CASE("featurizer settings round-trip, the batch form equals the one-text form") {
  Featurizer f(32, 5, "body");
  auto s = f.settings();
  CHECK(s == nlohmann::json{{"kind", "hashed-word-unigram-bigram"}, {"dimension", 32}, {"seed", 5}, {"text", "body"}});
  auto back = Featurizer::from_settings(s);
  CHECK(back.dimension() == 32);
  CHECK(back.seed() == 5);
  CHECK(back.text() == "body");
  std::vector<std::string> texts{"refund my order", "", "Où est ma commande ?"};
  auto X = back.transform(texts);
  REQUIRE(X.size() == 3 * 32);
  std::vector<float> one(32);
  f.transform(texts[2], one);
  CHECK(std::vector<float>(X.begin() + 64, X.end()) == one);
  CHECK(Featurizer(32, 5).settings().count("text") == 0);
  CHECK_FALSE(Featurizer::is_text({{"kind", "columns"}, {"dimension", 3}}));
  CHECK_THROWS_AS(Featurizer::from_settings({{"kind", "columns"}, {"dimension", 3}}), mlops::ConfigError);
  CHECK_THROWS_AS(Featurizer::from_settings({{"kind", Featurizer::kHashedWords}, {"dimension", "8"}}), mlops::ConfigError);
  CHECK_THROWS_AS(Featurizer::from_settings({{"kind", Featurizer::kHashedWords}, {"dimension", 8}, {"seed", -1}}),
                  mlops::ConfigError);
}

namespace {
std::string sha256_hex(const std::vector<float>& x) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(x.data()), x.size() * sizeof(float), digest);
  std::string hex;
  char two[3];
  for (unsigned char b : digest) {
    std::snprintf(two, sizeof two, "%02x", b);
    hex += two;
  }
  return hex;
}
}  // namespace

// Saved text models depend on these exact features; the same reference values are checked from Python
// (tests/python/test_featurizer.py), computed once from the featurizer as released.
TEST_CASE("features of known texts never change (golden SHA-256 of the float32 output)") {
  const std::vector<std::string> texts{"The quick brown fox jumps over the lazy dog", "refund my order #12345, please!",
                                       "Où est ma commande ?", "配送が遅れています", "包裹还没到 📦", "", "  ...  ",
                                       "GPU kernels and CUDA streams"};
  CHECK(sha256_hex(Featurizer(64, 0).transform(texts)) ==
        "67266b8df386cd57172f81c93b406ce6b12a59b22236a90125213de101be59b2");
  CHECK(sha256_hex(Featurizer(1024, 7).transform(texts)) ==
        "a4a7def9ce5a7925479cda0ab5acf3e21d8eca04a77c7d03565416584c35b7d5");
  std::vector<float> x(16);
  Featurizer(16, 0).transform("hello world", x);
  std::vector<float> expected(16, 0.0f);
  expected[0] = expected[5] = expected[8] = static_cast<float>(1 / std::sqrt(3.0));
  CHECK(x == expected);
}

namespace {
// A 2-class softmax over an 8-wide text featurizer whose weights favour bucket 0's sign.
Adapter text_adapter(std::vector<std::string> classes) {
  Featurizer f(8, 1, "body");
  std::vector<float> w(8 * 2 + 2, 0.0f);
  for (std::size_t i = 0; i < 8; ++i) w[i * 2] = static_cast<float>(i) - 3.5f;
  return Adapter(8, 0, std::move(classes), w, f.settings());
}
}  // namespace

TEST_CASE("a text adapter predicts from raw text exactly as from the featurized rows") {
  auto a = text_adapter({"billing", "shipping"});
  REQUIRE(a.takes_text());
  CHECK_FALSE(a.integer_labels());
  std::vector<std::string> texts{"where is my parcel", "refund the invoice twice", "hello"};
  auto X = a.featurize(texts);
  CHECK(a.predict_proba(texts) == a.predict_proba(X, texts.size()));
  CHECK(a.predict(texts) == a.predict(X, texts.size()));
  auto idx = a.predict_indices(texts);
  CHECK(a.labels_json(idx) == nlohmann::json(a.predict(texts)));
  // Saved and loaded, it keeps its featurizer and predicts the same.
  auto back = Adapter::from_bytes(a.to_bytes());
  CHECK(back.takes_text());
  CHECK(back.predict_proba(texts) == a.predict_proba(texts));
}

TEST_CASE("integer labels stay integers, a numeric adapter refuses text") {
  auto a = text_adapter({"0", "12"});
  CHECK(a.integer_labels());
  CHECK(a.classes_json() == nlohmann::json::array({0, 12}));
  auto back = Adapter::from_bytes(a.to_bytes());
  CHECK(back.integer_labels());
  CHECK(back.classes_json() == nlohmann::json::array({0, 12}));
  std::vector<std::int32_t> idx{1, 0};
  CHECK(a.labels_json(idx) == nlohmann::json::array({12, 0}));
  CHECK(text_adapter({"007", "1"}).integer_labels() == false);

  Adapter numeric(2, 0, {"a", "b"}, std::vector<float>(6, 0.1f));
  CHECK_FALSE(numeric.takes_text());
  std::vector<std::string> texts{"x"};
  CHECK_THROWS_AS((void)numeric.predict(texts), mlops::DataError);
  // A text featurizer whose width differs from the weights is refused.
  CHECK_THROWS_AS(Adapter(2, 0, {"a", "b"}, std::vector<float>(6, 0.1f), Featurizer(8).settings()), mlops::DataError);
}
