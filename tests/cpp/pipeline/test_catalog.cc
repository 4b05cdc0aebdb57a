#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "mlops/catalog.hpp"
#include "mlops/error.hpp"

using namespace mlops;

namespace {
std::string problems_of(const std::string& json_text) {
  try {
    (void)Catalog::from_json(json_text, "cat.json");
  } catch (const DataError& e) {
    return e.what();
  }
  return "valid";
}
}  // namespace

TEST_CASE("defaults fill every adapter, and the adapter's own fields win") {
  auto c = Catalog::from_json(R"({
    "defaults": {"table": "tickets", "label": "intent", "text": "body", "epochs": 5, "featurizer": {"dimension": 512}},
    "adapters": [
      {"name": "customer-1", "where": "customer_id = ?", "params": [1]},
      {"name": "customer-2", "where": "customer_id = ?", "params": [2], "epochs": 9, "hidden": 16, "optimizer": "sgd"}
    ]})");
  REQUIRE(c.size() == 2);
  const auto& a = c.at("customer-1");
  CHECK(a.table == "tickets");
  CHECK(a.text == "body");
  CHECK(a.hyperparameters.epochs == 5);
  CHECK(a.featurizer.dimension == 512);
  CHECK(a.params == nlohmann::json::array({1}));
  const auto& b = c.at("customer-2");
  CHECK(b.hyperparameters.epochs == 9);
  CHECK(b.hyperparameters.hidden == 16);
  CHECK(b.hyperparameters.optimizer == Optimizer::sgd);
  CHECK(b.hyperparameters.learning_rate == doctest::Approx(1e-3));
  CHECK_THROWS_AS((void)c.at("customer-3"), NotFoundError);
  // The explicit form parses back to the same catalog.
  CHECK(Catalog::from_json_value(c.to_json()).entries() == c.entries());
}

TEST_CASE("TOML catalogs read the same as JSON") {
  auto t = Catalog::from_toml(R"(
[defaults]
table = "readings"
label = "status"
features = ["f1", "f2"]
learning_rate = 0.01

[[adapters]]
name = "plant-a"
where = "site = ? AND active = ?"
params = ["a", true]
)");
  auto j = Catalog::from_json(R"({"defaults": {"table": "readings", "label": "status", "features": ["f1", "f2"],
    "learning_rate": 0.01}, "adapters": [{"name": "plant-a", "where": "site = ? AND active = ?", "params": ["a", true]}]})");
  CHECK(t.entries() == j.entries());
  CHECK(t.at("plant-a").features == std::vector<std::string>{"f1", "f2"});
}

TEST_CASE("every invalid entry is reported at once, naming the adapter and the field") {
  std::string msg = problems_of(R"({"defaults": {"table": "t", "label": "y", "features": ["a"]},
    "adapters": [
      {"name": "ok"},
      {"name": "bad-epochs", "epochs": 0},
      {"name": "bad-lr", "learning_rate": -1},
      {"name": "bad-table", "table": "t; DROP TABLE x"},
      {"name": "ok"},
      {"where": "id = ?"},
      {"name": "typo", "epoch": 3},
      {"name": "both", "text": "body"},
      {"name": "opt", "optimizer": "rmsprop"},
      {"name": "frac", "validation_fraction": 1.0},
      {"name": "float-epochs", "epochs": 2.5}
    ]})");
  INFO(msg);
  CHECK(msg.find("cat.json has 11 problems:") != std::string::npos);
  CHECK(msg.find("adapter 'bad-epochs' (#2): field 'epochs': must be >= 1, got 0") != std::string::npos);
  CHECK(msg.find("adapter 'bad-lr' (#3): field 'learning_rate': must be in (0, 1e+06], got -1") != std::string::npos);
  CHECK(msg.find("adapter 'bad-table' (#4): field 'table'") != std::string::npos);
  CHECK(msg.find("adapter 'ok' (#5): field 'name': duplicate name") != std::string::npos);
  CHECK(msg.find("adapter #6: field 'name': is required") != std::string::npos);
  CHECK(msg.find("adapter #6: field 'params': 'where' has 1 placeholder(s) but 0 value(s)") != std::string::npos);
  CHECK(msg.find("adapter 'typo' (#7): field 'epoch': unknown field") != std::string::npos);
  CHECK(msg.find("adapter 'both' (#8): field 'text': give either 'features' or 'text', not both") != std::string::npos);
  CHECK(msg.find("adapter 'opt' (#9): field 'optimizer'") != std::string::npos);
  CHECK(msg.find("adapter 'frac' (#10): field 'validation_fraction'") != std::string::npos);
  CHECK(msg.find("adapter 'float-epochs' (#11): field 'epochs': must be an integer, got 2.5") != std::string::npos);
}

TEST_CASE("malformed documents are DataErrors with a position") {
  CHECK(problems_of("{\"adapters\": [").find("invalid JSON at byte") != std::string::npos);
  // A number beyond a double's range is refused like any other bad JSON, not thrown as a library error.
  const auto overflow = problems_of(R"({"adapters": [{"name": "a", "epochs": 44444444444444444444e4444444444}]})");
  CHECK(overflow.find("cat.json: invalid JSON") != std::string::npos);
  CHECK(overflow.find("number overflow") != std::string::npos);
  CHECK(problems_of("[1]").find("adapter #1: must be a table/object") != std::string::npos);
  CHECK(problems_of("{\"adapter\": []}").find("unknown key 'adapter'") != std::string::npos);
  try {
    (void)Catalog::from_toml("[[adapters]\nname = 1", "cat.toml");
    FAIL("accepted bad TOML");
  } catch (const DataError& e) {
    CHECK(std::string(e.what()).find("cat.toml: invalid TOML at line 1") != std::string::npos);
  }
}

TEST_CASE("catalogs built in code get the same checks") {
  CatalogEntry e;
  e.name = "x";
  e.table = "t";
  e.label = "y";
  e.features = {"a"};
  CHECK(Catalog({e}).size() == 1);
  CHECK_THROWS_AS(Catalog({e, e}), DataError);
  e.hyperparameters.batch_size = 0;
  CHECK_THROWS_AS(Catalog({e}), DataError);
}

TEST_CASE("load picks the parser by extension") {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("mlops-catalog-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "c.toml") << "[[adapters]]\nname='a'\ntable='t'\nlabel='y'\nfeatures=['f']\n";
  CHECK(Catalog::load(dir / "c.toml").size() == 1);
  CHECK_THROWS_AS((void)Catalog::load(dir / "c.yaml"), ConfigError);
  CHECK_THROWS_AS((void)Catalog::load(dir / "missing.json"), NotFoundError);
  fs::remove_all(dir);
}

TEST_CASE("catalog integers are 64-bit and bounded: nothing is truncated on its way to the trainer") {
  const std::string base = R"({"defaults": {"table": "t", "label": "y", "text": "body"}, "adapters": [)";
  const auto epochs = problems_of(base + R"({"name": "e", "epochs": 4294967297}]})");
  CHECK(epochs.find("adapter 'e' (#1): field 'epochs': must be <= 100000 (the trainer's limit kMaxEpochs), got "
                    "4294967297") != std::string::npos);
  const auto dim = problems_of(base + R"({"name": "f", "featurizer": {"dimension": 4294967312}}]})");
  CHECK(dim.find("adapter 'f' (#1): field 'featurizer.dimension': must be <= 1048576 (the limit "
                 "FeaturizerSettings::kMaxDimension), got 4294967312") != std::string::npos);
  CHECK(problems_of(base + R"({"name": "h", "hidden": 1048576}]})").find("kMaxHidden") != std::string::npos);
  CHECK(problems_of(base + R"({"name": "u", "epochs": 18446744073709551615}]})").find("got 18446744073709551615") !=
        std::string::npos);
  // The trainer's own fields, class weights included, are catalog fields.
  const auto cat = Catalog::from_json(base + R"({"name": "w", "class_weights": [1, 2], "optimizer": "sgd"}]})");
  CHECK(cat.at("w").hyperparameters.class_weights == std::vector<double>{1, 2});
  CHECK(cat.at("w").hyperparameters.optimizer == Optimizer::sgd);
  CHECK(Catalog::from_json_value(cat.to_json()).at("w") == cat.at("w"));
}
