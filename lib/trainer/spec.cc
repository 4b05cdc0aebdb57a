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

void AdapterSpec::validate() const {
  if (name.empty()) throw ConfigError("adapter name must not be empty");
  const std::string w = who(*this);
  Hyperparameters::validate(w);

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
  if (!class_weights.empty() && class_weights.size() != ds.classes().size())
    throw ConfigError(w + ": field 'class_weights': has " + std::to_string(class_weights.size()) +
                      " values but the dataset has " + std::to_string(ds.classes().size()) + " classes");
  const auto n = ds.rows();
  std::size_t n_val = static_cast<std::size_t>(std::floor(static_cast<double>(n) * validation_fraction));
  if (validation_fraction > 0 && n_val == 0) n_val = 1;
  if (n_val >= n)
    throw DataError(w + ": field validation_fraction " + shortest(validation_fraction) + " leaves no training rows of " +
                    std::to_string(n));
  if (n > 0xFFFFFFFFull) throw DataError(w + ": field dataset has too many rows (" + std::to_string(n) + ")");
}

}  // namespace mlops
