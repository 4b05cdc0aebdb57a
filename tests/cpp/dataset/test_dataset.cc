#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "mlops/dataset.hpp"
#include "mlops/error.hpp"

using namespace mlops;

namespace {
Dataset small() { return Dataset({1, 2, 3, 4, 5, 6}, 3, 2, {0, 1, 0}, {"no", "yes"}); }
}  // namespace

TEST_CASE("a dataset shares its storage between copies") {
  Dataset a = small();
  Dataset b = a;
  CHECK(a.X().data() == b.X().data());
  CHECK(b.rows() == 3);
  CHECK(b.cols() == 2);
  CHECK(b.X()[3] == 4.0f);
  CHECK(b.lineage().rows == 3);
}

TEST_CASE("the content digest depends on every part of the contents and nothing else") {
  const std::string d = small().content_digest();
  CHECK(d.size() == 64);
  DatasetLineage other;
  other.table = "elsewhere";
  CHECK(Dataset({1, 2, 3, 4, 5, 6}, 3, 2, {0, 1, 0}, {"no", "yes"}, other).content_digest() == d);
  CHECK(Dataset({1, 2, 3, 4, 5, 7}, 3, 2, {0, 1, 0}, {"no", "yes"}).content_digest() != d);
  CHECK(Dataset({1, 2, 3, 4, 5, 6}, 3, 2, {0, 1, 1}, {"no", "yes"}).content_digest() != d);
  CHECK(Dataset({1, 2, 3, 4, 5, 6}, 3, 2, {0, 1, 0}, {"no", "ja"}).content_digest() != d);
  CHECK(Dataset({1, 2, 3, 4, 5, 6}, 2, 3, {0, 1}, {"no", "yes"}).content_digest() != d);
}

TEST_CASE("mismatched sizes are DataErrors") {
  CHECK_THROWS_AS(Dataset({1, 2, 3}, 2, 2, {0, 1}, {"a", "b"}), DataError);
  CHECK_THROWS_AS(Dataset({1, 2, 3, 4}, 2, 2, {0}, {"a", "b"}), DataError);
}

TEST_CASE("validate names the dataset, the field and the row") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto msg = [](const Dataset& d) {
    try {
      d.validate("adapter 'c7'");
    } catch (const DataError& e) {
      return std::string(e.what());
    }
    return std::string("valid");
  };
  CHECK(msg(small()) == "valid");
  CHECK(msg(Dataset()).find("adapter 'c7': dataset is empty") != std::string::npos);
  CHECK(msg(Dataset({1, nan, 3, 4}, 2, 2, {0, 1}, {"a", "b"})).find("field X, row 0, column 1") != std::string::npos);
  CHECK(msg(Dataset({1, 2, 3, 4}, 2, 2, {0, 2}, {"a", "b"})).find("field y, row 1") != std::string::npos);
}

TEST_CASE("take selects rows in order and keeps lineage") {
  DatasetLineage l;
  l.table = "t";
  Dataset d({1, 2, 3, 4, 5, 6}, 3, 2, {0, 1, 0}, {"a", "b"}, l);
  std::size_t idx[] = {2, 0};
  Dataset t = d.take(idx);
  CHECK(t.rows() == 2);
  CHECK(t.X()[0] == 5.0f);
  CHECK(t.y()[1] == 0);
  CHECK(t.lineage().table == "t");
  std::size_t bad[] = {3};
  CHECK_THROWS_AS((void)d.take(bad), DataError);
}

TEST_CASE("lineage round-trips through JSON") {
  DatasetLineage l;
  l.commit = "abc";
  l.features = {"f1", "f2"};
  l.rows = 5;
  l.params = nlohmann::json::array({1, "x"});
  CHECK(DatasetLineage::from_json(l.to_json()) == l);
  CHECK_THROWS_AS(DatasetLineage::from_json(nlohmann::json::array()), DataError);
  CHECK_THROWS_AS(DatasetLineage::from_json({{"rows", "many"}}), DataError);
}
