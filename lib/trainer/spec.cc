#include <charconv>
#include <cmath>
#include <set>

#include "mlops/error.hpp"
#include "mlops/trainer.hpp"
#include "core/text.hpp"

namespace mlops {

namespace {

std::string shortest(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string who(const AdapterSpec& s) { return "adapter " + detail::quote_for_message(s.name); }

}  // namespace

std::map<std::string, std::string> AdapterSpec::params() const {
  std::string cw = "[";
  for (std::size_t i = 0; i < class_weights.size(); ++i) cw += (i ? "," : "") + shortest(class_weights[i]);
  cw += "]";
  return {
      {"hidden", std::to_string(hidden)},
      {"epochs", std::to_string(epochs)},
      {"batch_size", std::to_string(batch_size)},
      {"learning_rate", shortest(learning_rate)},
      {"l2", shortest(l2)},
      {"validation_fraction", shortest(validation_fraction)},
      {"optimizer", optimizer},
      {"momentum", shortest(momentum)},
      {"patience", std::to_string(patience)},
      {"class_weights", cw},
  };
}

nlohmann::json AdapterSpec::params_json() const {
  return {{"hidden", hidden},
          {"epochs", epochs},
          {"batch_size", batch_size},
          {"learning_rate", learning_rate},
          {"l2", l2},
          {"validation_fraction", validation_fraction},
          {"optimizer", optimizer},
          {"momentum", momentum},
          {"patience", patience},
          {"class_weights", class_weights}};
}

void AdapterSpec::validate() const {
  if (name.empty()) throw ConfigError("adapter name must not be empty");
  const std::string w = who(*this);
  auto bad = [&](const char* field, const std::string& why) { throw ConfigError(w + ": field " + field + " " + why); };
  if (epochs < 1) bad("epochs", "must be >= 1, got " + std::to_string(epochs));
  if (batch_size == 0) bad("batch_size", "must be >= 1, got 0");
  if (!(std::isfinite(learning_rate) && learning_rate > 0))
    bad("learning_rate", "must be a finite number > 0, got " + shortest(learning_rate));
  if (!(std::isfinite(l2) && l2 >= 0)) bad("l2", "must be a finite number >= 0, got " + shortest(l2));
  if (!(validation_fraction >= 0 && validation_fraction < 1))
    bad("validation_fraction", "must be in [0, 1), got " + shortest(validation_fraction));
  if (optimizer != "adam" && optimizer != "sgd")
    bad("optimizer", "must be \"adam\" or \"sgd\", got " + detail::quote_for_message(optimizer));
  if (!(momentum >= 0 && momentum < 1)) bad("momentum", "must be in [0, 1), got " + shortest(momentum));
  if (patience < 0) bad("patience", "must be >= 0 (0 = off), got " + std::to_string(patience));
  if (hidden > (1u << 20)) bad("hidden", "is too large: " + std::to_string(hidden));

  const auto& ds = dataset;
  if (ds.rows() == 0) throw DataError(w + ": field dataset is empty (0 rows)");
  if (ds.cols() == 0) throw DataError(w + ": field dataset.X has no feature columns");
  if (ds.classes().size() < 2)
    throw DataError(w + ": field dataset.classes has " + std::to_string(ds.classes().size()) +
                    " class(es); a classifier needs at least 2");
  ds.validate(w);
  std::set<std::int32_t> seen;
  for (auto label : ds.y()) {
    seen.insert(label);
    if (seen.size() > 1) break;
  }
  if (seen.size() < 2)
    throw DataError(w + ": field dataset.y holds a single class (" +
                    detail::quote_for_message(ds.classes()[static_cast<std::size_t>(*seen.begin())]) +
                    "); a classifier needs at least 2");
  if (!class_weights.empty()) {
    if (class_weights.size() != ds.classes().size())
      bad("class_weights", "has " + std::to_string(class_weights.size()) + " values but the dataset has " +
                               std::to_string(ds.classes().size()) + " classes");
    for (std::size_t i = 0; i < class_weights.size(); ++i)
      if (!(std::isfinite(class_weights[i]) && class_weights[i] > 0))
        bad("class_weights", "[" + std::to_string(i) + "] must be a finite number > 0, got " +
                                 shortest(class_weights[i]));
  }
  const auto n = ds.rows();
  std::size_t n_val = static_cast<std::size_t>(std::floor(static_cast<double>(n) * validation_fraction));
  if (validation_fraction > 0 && n_val == 0) n_val = 1;
  if (n_val >= n)
    throw DataError(w + ": field validation_fraction " + shortest(validation_fraction) + " leaves no training rows of " +
                    std::to_string(n));
  if (n > 0xFFFFFFFFull) throw DataError(w + ": field dataset has too many rows (" + std::to_string(n) + ")");
}

}  // namespace mlops
