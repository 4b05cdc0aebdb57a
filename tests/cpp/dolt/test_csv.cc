#include <doctest/doctest.h>

#include <vector>

#include "dolt/csv.hpp"
#include "mlops/error.hpp"

using namespace mlops::detail;

TEST_CASE("CSV: quotes, CRLF, empty fields as NULL, type inference") {
  auto csv = parse_csv("\xEF\xBB\xBFid,name,score\r\n1,\"a, \"\"b\"\"\",2.5\r\n2,,3\n", "t.csv");
  REQUIRE(csv.header == std::vector<std::string>{"id", "name", "score"});
  REQUIRE(csv.rows.size() == 2);
  CHECK(*csv.rows[0][1] == "a, \"b\"");
  CHECK_FALSE(csv.rows[1][1].has_value());
  CHECK(csv.kinds == std::vector<char>{'i', 't', 'r'});
  CHECK(csv.lines == std::vector<std::size_t>{2, 3});
}

TEST_CASE("CSV: a value typed as a number is one the import's conversion accepts") {
  // "+-0992233" once counted as an integer ('+' skipped, then "-0992233"), and the import's stoll threw.
  auto csv = parse_csv("k,v,r\n+233,1,+1.5\n+-0992233,+5,+-2.5\n", "t.csv");
  CHECK(csv.kinds == std::vector<char>{'t', 'i', 't'});
  csv = parse_csv("k\n++1\n", "t.csv");
  CHECK(csv.kinds == std::vector<char>{'t'});
  csv = parse_csv("k,r\n+7,+7.25\n-3,-0.5\n", "t.csv");
  CHECK(csv.kinds == std::vector<char>{'i', 'r'});
}

TEST_CASE("CSV errors name the line") {
  auto msg = [](const std::string& text) {
    try {
      parse_csv(text, "t.csv");
    } catch (const mlops::DataError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(msg("a,b\n1,2\n3\n").find("line 3") != std::string::npos);
  CHECK(msg("a,b\n1,\"2\n").find("not closed") != std::string::npos);
  CHECK(msg("a,b\n1,\xff\n").find("line 2") != std::string::npos);
  CHECK(msg("a,a\n").find("twice") != std::string::npos);
  auto csv = parse_csv("id,v\n1,a\n2,b\n01,c\n", "t.csv");
  try {
    check_csv_keys(csv, {"id"}, "t.csv");
    FAIL("expected DataError");
  } catch (const mlops::DataError& e) {
    CHECK(std::string(e.what()).find("line 4") != std::string::npos);
    CHECK(std::string(e.what()).find("line 2") != std::string::npos);
  }
  CHECK_THROWS_AS(check_csv_keys(csv, {"nope"}, "t.csv"), mlops::ConfigError);
}
