// A release comparison as `mlops diff-release --format json` prints it: changes keyed by model, each metric
// with its old and new value and the change, the interval only where one was recorded.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "mlops/pipeline.hpp"

using namespace mlops;
using nlohmann::json;

namespace {

EvaluatedChange at_old_data() {
  EvaluatedChange e;
  e.data = "old";
  e.commit = "c0ffee";
  e.rows = 25;
  e.metrics["accuracy"] = {0.92, 0.60};
  e.metrics["log_loss"] = {0.30, 1.10};
  e.has_interval = true;
  e.low = -0.44;
  e.high = -0.16;
  e.confidence = 0.95;
  e.p_value = 0.002;
  return e;
}

}  // namespace

TEST_CASE("a release comparison as JSON: each changed model with its metric changes") {
  ReleaseComparison c;
  c.from = "aaaaaaaaaaaa";
  c.to = "bbbbbbbbbbbb";
  c.diff.added = {{"new-model", 1}};
  c.diff.changed = {{"m", 1, 2}};
  ReleaseChange m;
  m.name = "m";
  m.old_version = 1;
  m.new_version = 2;
  m.evaluation = "forward";
  m.verdict = "fail";
  m.reasons = {"accuracy -32.0 points vs v1"};
  m.changes = {at_old_data()};
  c.changed = {m};

  const json j = c.to_json();
  CHECK(j["from"] == "aaaaaaaaaaaa");
  CHECK(j["added"] == json{{"new-model", 1}});
  CHECK(j["removed"] == json::object());
  const json& out = j["changed"]["m"];
  CHECK(out["old_version"] == 1);
  CHECK(out["new_version"] == 2);
  CHECK(out["verdict"] == "fail");
  const json& ev = out["changes"][0];
  CHECK(ev["rows"] == 25);
  CHECK(ev["metrics"]["accuracy"]["old"].get<double>() == doctest::Approx(0.92));
  CHECK(ev["metrics"]["accuracy"]["delta"].get<double>() == doctest::Approx(-0.32));
  CHECK(ev["metrics"]["log_loss"]["delta"].get<double>() == doctest::Approx(0.80));
  CHECK_FALSE(ev["metrics"].contains("macro_f1"));  // not recorded: absent, never a made-up 0
  CHECK(ev["accuracy_interval"]["high"].get<double>() == doctest::Approx(-0.16));
  CHECK(ev["accuracy_interval"]["confidence"].get<double>() == doctest::Approx(0.95));

  // Without a recorded interval the key is absent: zeros would read as a measured, certain "no change".
  c.changed[0].changes[0].has_interval = false;
  CHECK_FALSE(c.to_json()["changed"]["m"]["changes"][0].contains("accuracy_interval"));
  // No evaluation between the two versions: the versions alone.
  c.changed[0] = ReleaseChange{"m", 1, 2};
  CHECK(c.to_json()["changed"]["m"]["evaluation"] == "none");
  CHECK(c.to_json()["changed"]["m"]["changes"] == json::array());
}
