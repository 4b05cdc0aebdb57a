#include <doctest/doctest.h>

#include "serve/scoring.hpp"
#include "serve_fixture.hpp"

using mlops::detail::RequestError;
using mlops::detail::scoring_rows;
using nlohmann::json;

namespace {
std::string reason_of(const json& body, const mlops::Adapter& a, std::size_t max_rows = 100) {
  try {
    (void)scoring_rows(body, a, max_rows);
  } catch (const RequestError& e) {
    CHECK(e.status() == 400);
    return e.reason();
  }
  return "accepted";
}
}  // namespace

TEST_CASE("every MLflow scoring body gives the same texts to a text adapter") {
  auto a = serve_test::text_adapter("x", 1);
  const std::vector<std::string> want{"refund please", "where is my parcel"};
  for (const auto& body : {
           json{{"dataframe_split", {{"columns", {"id", "body"}}, {"data", {{1, "refund please"}, {2, "where is my parcel"}}}}}},
           json{{"dataframe_records", {{{"body", "refund please"}}, {{"body", "where is my parcel"}}}}},
           json{{"instances", {"refund please", "where is my parcel"}}},
           json{{"instances", {{{"body", "refund please"}}, {{"body", "where is my parcel"}}}}},
           json{{"inputs", {"refund please", "where is my parcel"}}},
           json{{"inputs", {{"body", {"refund please", "where is my parcel"}}}}},
       }) {
    CAPTURE(body.dump());
    auto rows = scoring_rows(body, a, 100);
    CHECK(rows.rows == 2);
    CHECK(rows.texts == want);
    CHECK(mlops::detail::predict_labels(a, rows) == json(a.predict(std::span<const std::string>(want))));
  }
}

TEST_CASE("numeric adapters read rows by position or by feature name") {
  auto a = serve_test::numeric_adapter({"0", "1", "2"});
  auto split = scoring_rows(json{{"dataframe_split", {{"columns", {"f0", "f1", "f2"}}, {"data", {{0, 5, 0}, {9, 0, 0}}}}}}, a, 10);
  CHECK(split.X == std::vector<float>{0, 5, 0, 9, 0, 0});
  auto records = scoring_rows(json{{"dataframe_records", {{{"f2", 0}, {"f0", 0}, {"f1", 5}}}}}, a, 10);
  CHECK(records.X == std::vector<float>{0, 5, 0});
  auto labels = mlops::detail::predict_labels(a, split);
  CHECK(labels == json::array({1, 0}));  // integer labels stay integers
}

TEST_CASE("a text/csv body is read like dataframe_split, its errors name the row") {
  auto text = serve_test::text_adapter("x", 1);
  auto rows = mlops::detail::scoring_rows_csv("id,body\n1,\"a, \"\"quoted\"\" text\"\r\n2,plain\n", text, 10);
  CHECK(rows.texts == std::vector<std::string>{"a, \"quoted\" text", "plain"});
  auto num = serve_test::numeric_adapter({"a", "b"});
  CHECK(mlops::detail::scoring_rows_csv("f1,f0,f2\n1,2,3.5\n", num, 10).X == std::vector<float>{2, 1, 3.5f});
  auto reason = [&](std::string_view csv, const mlops::Adapter& a) {
    try {
      (void)mlops::detail::scoring_rows_csv(csv, a, 10);
    } catch (const RequestError& e) {
      return e.reason();
    }
    return std::string("accepted");
  };
  CHECK(reason("id,body\n1\n", text) == "malformed_csv");
  CHECK(reason("body\n\"open\n", text) == "malformed_csv");
  CHECK(reason("", text) == "malformed_csv");
  CHECK(reason("title\nx\n", text) == "missing_column");
  CHECK(reason("f0,f1,f2\n1,two,3\n", num) == "not_numeric");
  std::string eleven = "body\n";
  for (int i = 0; i < 11; ++i) eleven += "t\n";
  CHECK(reason(eleven, text) == "too_many_rows");
}

TEST_CASE("scoring errors have stable reasons") {
  auto text = serve_test::text_adapter("x", 1);
  auto num = serve_test::numeric_adapter({"a", "b"});
  CHECK(reason_of(json{{"instances", {1, 2}}}, text) == "not_text");
  CHECK(reason_of(json{{"dataframe_split", {{"columns", {"body"}}, {"data", {{3.5}}}}}}, text) == "not_text");
  CHECK(reason_of(json{{"dataframe_records", {{{"title", "x"}, {"other", "y"}}}}}, text) == "missing_column");
  // A single wrong column or key is refused too, never read as the text.
  CHECK(reason_of(json{{"dataframe_records", {{{"title", "x"}}}}}, text) == "missing_column");
  CHECK(reason_of(json{{"instances", {{{"titel", "x"}}}}}, text) == "missing_column");
  CHECK(reason_of(json{{"inputs", {{"titel", {"x"}}}}}, text) == "missing_column");
  CHECK(reason_of(json{{"dataframe_split", {{"columns", {"titel"}}, {"data", {{"x"}}}}}}, text) == "missing_column");
  CHECK(reason_of(json{{"instances", {{1, 2}}}}, num) == "wrong_feature_count");
  CHECK(reason_of(json{{"instances", {"text"}}}, num) == "not_numeric");
  CHECK(reason_of(json{{"instances", {{1, "x", 3}}}}, num) == "not_numeric");
  CHECK(reason_of(json{{"rows", {1}}}, num) == "no_input_format");
  CHECK(reason_of(json::array({1}), num) == "no_input_format");
  CHECK(reason_of(json{{"instances", {"a"}}, {"inputs", {"b"}}}, text) == "no_input_format");
  CHECK(reason_of(json{{"instances", std::vector<std::string>(11, "t")}}, text, 10) == "too_many_rows");
  CHECK(reason_of(json{{"instances", std::vector<std::string>(10, "t")}}, text, 10) == "accepted");
}
