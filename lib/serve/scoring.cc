#include "serve/scoring.hpp"

#include <cmath>

#include "core/text.hpp"

namespace mlops::detail {

using nlohmann::json;

std::string RequestError::to_json() const {
  return json{{"error_code", id()}, {"reason", reason_}, {"message", what()}}.dump(-1, ' ', false,
                                                                                   json::error_handler_t::replace);
}

RequestError bad_request(std::string reason, const std::string& message) {
  return RequestError(400, "mlops.data", std::move(reason), "[mlops.data] " + message);
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
                         "[mlops.data] the request has " + std::to_string(before_ + n) + " rows; the limit is " +
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
      auto it = text_column_.empty() ? rec.end() : rec.find(text_column_);
      if (it == rec.end() && rec.size() == 1) it = rec.begin();
      if (it == rec.end()) throw missing_text_column(rec);
      return text(*it);
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
      if (col < 0 && columns.size() != 1)
        throw bad_request("missing_column", "dataframe_split has no column " + quote_for_message(text_column_) +
                                                " (the adapter's text column)");
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
      auto it = text_column_.empty() ? obj.end() : obj.find(text_column_);
      if (it == obj.end() && obj.size() == 1) it = obj.begin();
      if (it == obj.end()) throw missing_text_column(obj);
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

json predict_labels(const Adapter& adapter, const ScoringRows& rows) {
  if (rows.rows == 0) return json::array();
  const auto idx = adapter.takes_text() ? adapter.predict_indices(std::span<const std::string>(rows.texts))
                                        : adapter.predict_indices(rows.X, rows.rows);
  return adapter.labels_json(idx);
}

}  // namespace mlops::detail
