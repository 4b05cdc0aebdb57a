// Hyperparameters are declared, read and checked in one place; datasets are checked once, when made.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>

#include "mlops/error.hpp"
#include "mlops/hyperparameters.hpp"
#include "mlops/trainer.hpp"

using namespace mlops;
using nlohmann::json;

namespace {

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += s + "\n";
  return out;
}

std::string read_problems(const json& j) {
  Hyperparameters h;
  std::vector<std::string> problems;
  h.read_json(j, problems);
  for (auto& p : h.problems()) problems.push_back(p);
  return joined(problems);
}

}  // namespace

TEST_CASE("integers are 64-bit and bounded by limits that are named") {
  // 2^32 + 1 is not 1 epoch, 2^32 + 16 hidden units are not 16: each is refused whole.
  CHECK(read_problems({{"epochs", 4294967297LL}}).find("field 'epochs': must be <= 100000 (the trainer's limit "
                                                      "kMaxEpochs), got 4294967297") != std::string::npos);
  CHECK(read_problems({{"hidden", 4294967312LL}}).find("kMaxHidden") != std::string::npos);
  CHECK(read_problems({{"hidden", 1 << 20}}).find("kMaxHidden") != std::string::npos);
  CHECK(read_problems({{"epochs", 1000000000}}).find("kMaxEpochs") != std::string::npos);
  CHECK(read_problems({{"batch_size", 1LL << 40}}).find("kMaxBatchSize") != std::string::npos);
  // An unsigned value past int64 is reported as itself, not as the negative number its bits would be.
  const auto huge = read_problems({{"epochs", std::numeric_limits<std::uint64_t>::max()}});
  CHECK(huge.find("got 18446744073709551615") != std::string::npos);
  CHECK(read_problems({{"hidden", -1}}).find("field 'hidden': must be >= 0, got -1") != std::string::npos);
  CHECK(read_problems({{"epochs", 2.5}}).find("field 'epochs': must be an integer, got 2.5") != std::string::npos);
  CHECK(read_problems({{"l2", "x"}}).find("field 'l2': must be a number, got string") != std::string::npos);
  CHECK(read_problems({{"optimizer", "lbfgs"}}).find("field 'optimizer': must be 'adam' or 'sgd', got 'lbfgs'") !=
        std::string::npos);
  CHECK(read_problems({{"class_weights", {1, "a"}}}).find("field 'class_weights'") != std::string::npos);
  CHECK(read_problems({{"class_weights", {1, -2}}}).find("class_weights': [1] must be a finite number > 0") !=
        std::string::npos);
  // The limits themselves are accepted.
  CHECK(read_problems({{"epochs", Hyperparameters::kMaxEpochs},
                       {"hidden", Hyperparameters::kMaxHidden},
                       {"batch_size", Hyperparameters::kMaxBatchSize},
                       {"patience", Hyperparameters::kMaxEpochs}})
            .empty());
}

TEST_CASE("one validator: the trainer refuses what the catalog refuses, naming the adapter and the limit") {
  AdapterSpec s;
  s.name = "big";
  s.dataset = Dataset({0, 1, 1, 0, 2, 2, 3, 1}, 4, 2, {0, 1, 0, 1}, {"a", "b"});
  s.validation_fraction = 0;
  s.epochs = 4294967297LL;
  s.hidden = -1;
  try {
    s.validate();
    FAIL("no error");
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    CHECK(msg.find("adapter 'big': field") != std::string::npos);
    CHECK(msg.find("field 'epochs': must be <= 100000 (the trainer's limit kMaxEpochs), got 4294967297") !=
          std::string::npos);
    CHECK(msg.find("field 'hidden': must be >= 0, got -1") != std::string::npos);
  }
  s.epochs = 1;
  s.hidden = 0;
  s.learning_rate = std::nan("");
  CHECK_THROWS_WITH_AS(s.validate(), doctest::Contains("learning_rate"), ConfigError);
  s.learning_rate = 0.1;
  CHECK_NOTHROW(s.validate());
  CHECK(CudaTrainer::planned_steps({s}) == 1);
}

TEST_CASE("JSON form: every field, the optimiser by name, read back equal") {
  Hyperparameters h;
  h.hidden = 8;
  h.epochs = 3;
  h.optimizer = Optimizer::sgd;
  h.class_weights = {1.0, 0.5};
  const json j = h.to_json();
  CHECK(j.at("optimizer") == "sgd");
  CHECK(j.at("class_weights") == json::array({1.0, 0.5}));
  Hyperparameters back;
  std::vector<std::string> problems;
  back.read_json(j, problems);
  CHECK(problems.empty());
  CHECK(back == h);
  for (const auto& [key, value] : j.items()) CHECK(Hyperparameters::is_field(key));
  CHECK_FALSE(Hyperparameters::is_field("table"));
  CHECK(h.params().size() == j.size());
  for (const auto& name : optimizer_names()) CHECK(to_string(*parse_optimizer(name)) == name);
  CHECK_FALSE(parse_optimizer("Adam"));
}

TEST_CASE("a dataset's values are checked once, when it is made, and remembered") {
  const Dataset fine({1, 2, 3, 4}, 2, 2, {0, 1}, {"a", "b"});
  CHECK(fine.values_valid());
  CHECK_NOTHROW(fine.validate("fine"));
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> X(3 * 5000, 0.5f);
  X[2 * 5000 + 4321] = inf;  // past the first block of the scan
  const Dataset bad_x(X, 3, 5000, {0, 1, 0}, {"a", "b"});
  CHECK_FALSE(bad_x.values_valid());
  CHECK_THROWS_WITH_AS(bad_x.validate("adapter 'x'"),
                       doctest::Contains("adapter 'x': field X, row 2, column 4321: value is not finite (NaN or Inf)"),
                       DataError);
  const Dataset bad_y({1, 2, 3, 4}, 2, 2, {0, 2}, {"a", "b"});
  CHECK_FALSE(bad_y.values_valid());
  CHECK_THROWS_WITH_AS(bad_y.validate("d"), doctest::Contains("d: field y, row 1: label index 2 is out of range [0, 2)"),
                       DataError);
  // A subset made of good rows is good again.
  const std::size_t good_rows[] = {0, 1};
  CHECK(bad_x.take(good_rows).values_valid());
}
