#include "serve/scoring.hpp"

#include <cmath>
#include <cstdlib>

#include "core/text.hpp"

namespace mlops::detail {

using nlohmann::json;

json RequestError::to_json() const {
  return {{"error_code", mlflow_error_code(status_)}, {"message", what()}, {"reason", reason_}, {"error_id", id()}};
}

RequestError bad_request(std::string reason, const std::string& message) {
  return RequestError(400, "mlops.data", std::move(reason), message);
}

const char* mlflow_error_code(int status) noexcept {
  if (status == 404) return "RESOURCE_DOES_NOT_EXIST";
  if (status == 503) return "TEMPORARILY_UNAVAILABLE";
  if (status >= 500) return "INTERNAL_ERROR";
  return "BAD_REQUEST";
}

namespace {

const char* kFormats[] = {"dataframe_split", "dataframe_records", "instances", "inputs"};

// Collects rows for one adapter, checking each value's type as it goes.
class RowReader {
 public:
  RowReader(const Adapter& a, std::size_t max_rows, std::size_t rows_before)
      : a_(a), max_rows_(max_rows), before_(rows_before) {
    if (a.takes_text()) text_column_ = a.text_featurizer().text();
    const auto& f = a.lineage().find("features");
    if (f != a.lineage().end() && f->is_array() && f->size() == a.features())
      for (const auto& n : *f)
        if (n.is_string()) feature_names_.push_back(n.get<std::string>());
    if (feature_names_.size() != a.features()) feature_names_.clear();
  }

  void reserve(std::size_t n) {
    if (before_ + n > max_rows_)
      throw RequestError(400, "mlops.data", "too_many_rows",
                         "the request has " + std::to_string(before_ + n) + " rows; the limit is " +
                             std::to_string(max_rows_));
    if (a_.takes_text()) out_.texts.reserve(n);
    else out_.X.reserve(n * a_.features());
  }

  // One row given as a single value (a text, or a list of numbers).
  void value_row(const json& v) {
    if (a_.takes_text()) {
      if (v.is_array() && v.size() == 1) return text(v[0]);
      return text(v);
    }
    if (!v.is_array()) throw not_numeric(v);
    numbers(v);
  }

  // One row given as an object of columns.
  void record_row(const json& rec) {
    if (!rec.is_object()) return value_row(rec);
    if (a_.takes_text()) {
      return text(*text_field(rec));
    }
    if (feature_names_.empty())
      throw bad_request("missing_column", "this adapter's feature names are not recorded; send dataframe_split or "
                                          "instances rows of " + std::to_string(a_.features()) + " numbers");
    count_row();
    for (const auto& name : feature_names_) {
      auto it = rec.find(name);
      if (it == rec.end())
        throw bad_request("missing_column", "row " + std::to_string(out_.rows - 1) + " has no feature column " +
                                                quote_for_message(name));
      number(*it);
    }
  }

  // dataframe_split: rows of values in `columns` order.
  void split(const json& columns, const json& data) {
    if (!data.is_array()) throw bad_request("malformed_input", "dataframe_split.data must be a list of rows");
    reserve(data.size());
    std::ptrdiff_t col = -1;
    if (a_.takes_text() && columns.is_array()) {
      for (std::size_t i = 0; i < columns.size(); ++i)
        if (columns[i].is_string() && columns[i].get_ref<const std::string&>() == text_column_) col = static_cast<std::ptrdiff_t>(i);
      // A single column is taken as the text only when the adapter records no column name.
      if (col < 0 && !(text_column_.empty() && columns.size() == 1))
        throw bad_request("missing_column", "dataframe_split has no column " + quote_for_message(text_column_) +
                                                " (the adapter's text column) among " + quote_for_message(columns.dump(), 200));
      if (col < 0) col = 0;
    }
    for (const auto& row : data) {
      if (col >= 0) {
        if (!row.is_array() || row.size() <= static_cast<std::size_t>(col))
          throw bad_request("malformed_input", "dataframe_split row " + std::to_string(out_.rows) + " is too short");
        text(row[static_cast<std::size_t>(col)]);
      } else {
        value_row(row);
      }
    }
  }

  // A columnar object {column: [values...]} (the `inputs` tensor form).
  void columnar(const json& obj) {
    if (a_.takes_text()) {
      auto it = text_field(obj);
      if (!it->is_array()) throw bad_request("malformed_input", "inputs." + it.key() + " must be a list");
      reserve(it->size());
      for (const auto& v : *it) text(v);
      return;
    }
    if (feature_names_.empty())
      throw bad_request("missing_column", "this adapter's feature names are not recorded; send rows of numbers");
    std::size_t n = 0;
    for (std::size_t f = 0; f < feature_names_.size(); ++f) {
      auto it = obj.find(feature_names_[f]);
      if (it == obj.end() || !it->is_array())
        throw bad_request("missing_column", "inputs has no list for feature column " + quote_for_message(feature_names_[f]));
      if (f == 0) n = it->size();
      else if (it->size() != n) throw bad_request("malformed_input", "inputs columns have different lengths");
    }
    reserve(n);
    for (std::size_t r = 0; r < n; ++r) {
      count_row();
      for (const auto& name : feature_names_) number(obj[name][r]);
    }
  }

  ScoringRows take() { return std::move(out_); }

 private:
  void count_row() {
    if (before_ + out_.rows + 1 > max_rows_) reserve(out_.rows + 1);
    ++out_.rows;
  }
  void text(const json& v) {
    if (!v.is_string())
      throw bad_request("not_text", "row " + std::to_string(out_.rows) + ": this adapter takes text (column " +
                                        quote_for_message(text_column_) + "), got " + std::string(v.type_name()));
    count_row();
    out_.texts.push_back(v.get<std::string>());
  }
  void numbers(const json& row) {
    if (row.size() != a_.features())
      throw bad_request("wrong_feature_count", "row " + std::to_string(out_.rows) + " has " + std::to_string(row.size()) +
                                                   " features; the adapter takes " + std::to_string(a_.features()));
    count_row();
    for (const auto& v : row) number(v);
  }
  void number(const json& v) {
    if (!v.is_number()) throw not_numeric(v);
    const double d = v.get<double>();
    if (!std::isfinite(d)) throw bad_request("not_numeric", "row " + std::to_string(out_.rows - 1) + " has a non-finite value");
    out_.X.push_back(static_cast<float>(d));
  }
  RequestError not_numeric(const json& v) const {
    return bad_request("not_numeric", "row " + std::to_string(out_.rows) + ": this adapter takes rows of " +
                                          std::to_string(a_.features()) + " numbers, got " + std::string(v.type_name()));
  }
  // The text of a record or columnar object: its text column; any single key only when the adapter records
  // no column name (a wrong name is refused, never read as the text).
  json::const_iterator text_field(const json& obj) const {
    auto it = text_column_.empty() ? obj.end() : obj.find(text_column_);
    if (it == obj.end() && text_column_.empty() && obj.size() == 1) it = obj.begin();
    if (it == obj.end()) throw missing_text_column(obj);
    return it;
  }
  RequestError missing_text_column(const json& obj) const {
    std::string keys;
    for (const auto& [k, v] : obj.items()) keys += (keys.empty() ? "" : ", ") + k;
    return bad_request("missing_column", "no text column " + quote_for_message(text_column_) + " among [" +
                                             quote_for_message(keys, 200) + "]");
  }

  const Adapter& a_;
  std::size_t max_rows_, before_;
  std::string text_column_;
  std::vector<std::string> feature_names_;
  ScoringRows out_;
};

}  // namespace

ScoringRows scoring_rows(const json& body, const Adapter& adapter, std::size_t max_rows, std::size_t rows_before) {
  if (!body.is_object()) throw bad_request("no_input_format", "the request body must be a JSON object");
  const json* input = nullptr;
  const char* format = nullptr;
  for (const char* f : kFormats) {
    auto it = body.find(f);
    if (it == body.end()) continue;
    if (input) throw bad_request("no_input_format", std::string("give one of dataframe_split, dataframe_records, instances, inputs; got ") + format + " and " + f);
    input = &*it;
    format = f;
  }
  if (!input)
    throw bad_request("no_input_format", "the body has none of dataframe_split, dataframe_records, instances, inputs");
  RowReader r(adapter, max_rows, rows_before);
  const std::string fmt = format;
  if (fmt == "dataframe_split") {
    if (!input->is_object() || !input->contains("data"))
      throw bad_request("malformed_input", "dataframe_split must be an object with columns and data");
    r.split(input->value("columns", json()), (*input)["data"]);
  } else if (input->is_object() && fmt == "inputs") {
    r.columnar(*input);
  } else {
    if (!input->is_array()) throw bad_request("malformed_input", fmt + " must be a list of rows");
    r.reserve(input->size());
    for (const auto& row : *input) r.record_row(row);
  }
  return r.take();
}

namespace {

// RFC 4180 records: quoted fields may hold commas, quotes ("") and line ends; CRLF or LF ends a record.
std::vector<std::vector<std::string>> csv_records(std::string_view text) {
  std::vector<std::vector<std::string>> out;
  std::vector<std::string> record;
  std::string field;
  bool quoted = false, was_quoted = false;
  auto end_field = [&] {
    record.push_back(std::move(field));
    field.clear();
    was_quoted = false;
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c != '"') field += c;
      else if (i + 1 < text.size() && text[i + 1] == '"') field += '"', ++i;
      else quoted = false;
    } else if (c == '"') {
      if (!field.empty() || was_quoted)
        throw bad_request("malformed_csv", "record " + std::to_string(out.size() + 1) + " has a quote inside a field");
      quoted = was_quoted = true;
    } else if (c == ',') {
      end_field();
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      end_field();
      out.push_back(std::move(record));
      record.clear();
    } else {
      field += c;
    }
  }
  if (quoted) throw bad_request("malformed_csv", "the body ends inside a quoted field");
  if (!field.empty() || was_quoted || !record.empty()) {
    end_field();
    out.push_back(std::move(record));
  }
  return out;
}

json csv_cell(const std::string& v, bool numeric) {
  if (!numeric) return v;
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  if (v.empty() || end != v.c_str() + v.size()) return v;  // refused as not_numeric, naming the row
  return d;
}

}  // namespace

ScoringRows scoring_rows_csv(std::string_view csv, const Adapter& adapter, std::size_t max_rows, std::size_t rows_before) {
  auto records = csv_records(csv);
  if (records.empty()) throw bad_request("malformed_csv", "the CSV body has no header row");
  json columns = records[0];
  json data = json::array();
  for (std::size_t r = 1; r < records.size(); ++r) {
    if (records[r].size() != records[0].size())
      throw bad_request("malformed_csv", "CSV row " + std::to_string(r - 1) + " has " + std::to_string(records[r].size()) +
                                             " fields; the header has " + std::to_string(records[0].size()));
    json row = json::array();
    for (const auto& v : records[r]) row.push_back(csv_cell(v, !adapter.takes_text()));
    data.push_back(std::move(row));
  }
  if (!adapter.takes_text()) {
    // Numeric rows are read by feature name, like dataframe_records.
    json recs = json::array();
    for (const auto& row : data) {
      json rec = json::object();
      for (std::size_t c = 0; c < columns.size(); ++c) rec[columns[c].get<std::string>()] = row[c];
      recs.push_back(std::move(rec));
    }
    return scoring_rows(json{{"dataframe_records", std::move(recs)}}, adapter, max_rows, rows_before);
  }
  return scoring_rows(json{{"dataframe_split", {{"columns", std::move(columns)}, {"data", std::move(data)}}}}, adapter,
                      max_rows, rows_before);
}

json predict_labels(const Adapter& adapter, const ScoringRows& rows) {
  if (rows.rows == 0) return json::array();
  const auto idx = adapter.takes_text() ? adapter.predict_indices(std::span<const std::string>(rows.texts))
                                        : adapter.predict_indices(rows.X, rows.rows);
  return adapter.labels_json(idx);
}

}  // namespace mlops::detail
