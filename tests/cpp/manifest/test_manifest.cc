#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include "core/hash.hpp"
#include "mlops/error.hpp"
#include "mlops/manifest.hpp"

using namespace mlops;
namespace fs = std::filesystem;

TEST_CASE("canonical JSON sorts keys by code point, compact, UTF-8 unescaped") {
  ReleaseManifest m({{"b", 2}, {"a", 10}, {"\xc3\xa4-kunde", 1}, {"Z", 3}, {"it's <ok>", 4}});
  CHECK(m.to_json() == "{\"Z\":3,\"a\":10,\"b\":2,\"it's <ok>\":4,\"\xc3\xa4-kunde\":1}");
  CHECK(m.md5() == detail::md5_hex(m.to_json()));
  CHECK(m.sha256() == detail::sha256_hex(m.to_json()));
  CHECK(ReleaseManifest().to_json() == "{}");
  CHECK(ReleaseManifest().md5() == "99914b932bd37a50b983c5e7c90ae93b");
}

TEST_CASE("the release id of {\"a\":1} is the MD5 of those bytes") {
  CHECK(ReleaseManifest({{"a", 1}}).md5() == "bb6cb5c68df4652941caf652a366f2d8");
}

TEST_CASE("bad entries are DataErrors naming the entry") {
  auto message = [](ReleaseManifest::Entries e) {
    try {
      ReleaseManifest m(std::move(e));
    } catch (const DataError& err) {
      return std::string(err.what());
    }
    return std::string("no error");
  };
  CHECK(message({{"", 1}}).find("empty model name") != std::string::npos);
  CHECK(message({{std::string(256, 'x'), 1}}).find("256 bytes, at most 255") != std::string::npos);
  CHECK(message({{std::string(255, 'x'), 1}}) == "no error");
  // Names become MLflow registered model names, directories of a build context and Docker labels.
  for (const std::string bad : {"a/b", "../up", "..", ".", "a:b", "back\\slash", "quo\"te", "   "})
    CHECK_MESSAGE(message({{bad, 1}}) != "no error", bad);
  CHECK(message({{"customer 7.v2-ß", 1}}) == "no error");
  CHECK(message({{"bad\xff", 1}}).find("not valid UTF-8") != std::string::npos);
  CHECK(message({{"tab\there", 1}}).find("'tab\\x09here'") != std::string::npos);
  CHECK(message({{"zero", 0}}).find("'zero': version 0") != std::string::npos);
  CHECK(message({{"neg", -3}}).find("version -3") != std::string::npos);
}

TEST_CASE("from_json round-trips and accepts any whitespace") {
  ReleaseManifest m({{"customer-1", 3}, {"customer-2", 7}});
  CHECK(ReleaseManifest::from_json(m.to_json()) == m);
  CHECK(ReleaseManifest::from_json(" {\n \"customer-2\" : 7 ,\"customer-1\":3 } ") == m);
  CHECK(ReleaseManifest::from_json("{\"\\u00e4\":1}").to_json() == "{\"\xc3\xa4\":1}");
  CHECK(ReleaseManifest::from_json(m.to_json(), m.md5()) == m);
  CHECK(ReleaseManifest::from_json("{}").empty());
}

TEST_CASE("from_json rejects what is not a manifest") {
  auto rejects = [](const std::string& text, const std::string& needle) {
    try {
      (void)ReleaseManifest::from_json(text);
    } catch (const DataError& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find(needle) != std::string::npos);
      return;
    }
    FAIL("accepted: " << text);
  };
  rejects("{\"a\":1,\"a\":1}", "'a': duplicate key");
  rejects("{\"a\":1.0}", "'a': version 1.0 is not an integer");
  rejects("{\"a\":1e3}", "not an integer");
  rejects("{\"a\":\"3\"}", "version is a string");
  rejects("{\"a\":true}", "a boolean");
  rejects("{\"a\":null}", "null");
  rejects("{\"a\":{\"b\":1}}", "an object");
  rejects("{\"a\":[1]}", "an array");
  rejects("{\"a\":99999999999999999999}", "out of range");
  rejects("{\"a\":18446744073709551615}", "out of range");
  rejects("{\"a\":0}", "version 0");
  rejects("[1,2]", "must be a JSON object");
  rejects("7", "must be a JSON object");
  rejects("\"x\"", "must be a JSON object");
  rejects("{\"a\":1", "invalid JSON at byte");
  rejects("{\"a\":1} x", "invalid JSON");
  rejects("", "invalid JSON");
  rejects("{\"\\u0000\":1}", "control character");
  rejects("{\"\\ud800\":1}", "invalid JSON");
}

TEST_CASE("from_json with a wrong expected MD5 is an IntegrityError") {
  ReleaseManifest m({{"a", 1}});
  CHECK_THROWS_AS((void)ReleaseManifest::from_json(m.to_json(), std::string(32, '0')), IntegrityError);
  CHECK_NOTHROW((void)ReleaseManifest::from_json(m.to_json(), "BB6CB5C68DF4652941CAF652A366F2D8"));
}

TEST_CASE("image_tag follows Docker's reference grammar") {
  ReleaseManifest m({{"a", 1}});
  CHECK(m.image_tag("registry.example.com/adapters") == "registry.example.com/adapters:" + m.md5());
  CHECK_NOTHROW((void)m.image_tag("localhost:5000/team/adapters"));
  CHECK_NOTHROW((void)m.image_tag("adapters"));
  CHECK_NOTHROW((void)m.image_tag("my_team/ad--apters.v2"));
  CHECK_NOTHROW((void)m.image_tag("[::1]:5000/adapters"));
  CHECK_NOTHROW((void)m.image_tag("Registry.Example.com/adapters"));
  for (const char* bad : {"", "Adapters", "team/Adapters", "adapters:latest", "reg.io/adapters:v1", "a//b",
                          "-adapters", "adapters-", "a@sha256:00", "bad host.io/x", "reg.io:port/x", "a/"}) {
    INFO(bad);
    CHECK_THROWS_AS((void)m.image_tag(bad), DataError);
  }
  try {
    (void)m.image_tag("adapters:latest");
  } catch (const DataError& e) {
    CHECK(std::string(e.what()).find("carries a tag") != std::string::npos);
  }
}

TEST_CASE("diff lists added, removed and changed entries") {
  ReleaseManifest a({{"keep", 1}, {"bump", 2}, {"drop", 5}});
  ReleaseManifest b({{"keep", 1}, {"bump", 3}, {"new", 1}});
  ManifestDiff d = a.diff(b);
  CHECK(d.added == std::vector<ManifestDiff::Entry>{{"new", 1}});
  CHECK(d.removed == std::vector<ManifestDiff::Entry>{{"drop", 5}});
  CHECK(d.changed == std::vector<ManifestDiff::Change>{{"bump", 2, 3}});
  CHECK(a.diff(a).empty());
}

TEST_CASE("with and without return new manifests") {
  ReleaseManifest a({{"x", 1}});
  CHECK(a.with_version("x", 2).at("x") == 2);
  CHECK(a.with_version("y", 4).size() == 2);
  CHECK(a.at("x") == 1);
  CHECK(a.without("x").empty());
  CHECK_THROWS_AS((void)a.without("nope"), NotFoundError);
  CHECK_THROWS_AS((void)a.at("nope"), NotFoundError);
  CHECK_THROWS_AS((void)a.with_version("", 1), DataError);
}

TEST_CASE("save is atomic and load verifies") {
  fs::path dir = fs::temp_directory_path() / ("mlops-manifest-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  ReleaseManifest m({{"customer-1", 3}});
  const fs::path file = dir / "release.json";
  m.save(file);
  CHECK(ReleaseManifest::load(file) == m);
  CHECK(ReleaseManifest::load(file, m.md5()) == m);
  CHECK_THROWS_AS((void)ReleaseManifest::load(file, std::string(32, 'f')), IntegrityError);
  // Overwriting leaves no temporary files behind.
  m.with_version("customer-2", 1).save(file);
  int files = 0;
  for (auto& e : fs::directory_iterator(dir)) files += e.is_regular_file();
  CHECK(files == 1);
  { std::ofstream(file, std::ios::trunc) << "{\"customer-1\":"; }
  CHECK_THROWS_AS((void)ReleaseManifest::load(file), DataError);
  CHECK_THROWS_AS((void)ReleaseManifest::load(dir / "missing.json"), NotFoundError);
  CHECK_THROWS_AS(m.save(dir / "no-such-dir" / "x.json"), ConfigError);
  fs::remove_all(dir);
}
