#include "mlops/hyperparameters.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <limits>
#include <sstream>

#include "core/text.hpp"
#include "mlops/error.hpp"

namespace mlops {

namespace {

using nlohmann::json;

// The one table of optimisers: a new one is a line here, an enum value, and its backends.
constexpr std::array<std::pair<Optimizer, std::string_view>, 2> kOptimizers = {{
    {Optimizer::adam, "adam"},
    {Optimizer::sgd, "sgd"},
}};

struct IntegerField {
  const char* name;
  std::int64_t Hyperparameters::*member;
  std::int64_t min;
  std::int64_t max;
  const char* limit;  // the named bound, for messages
};

constexpr std::array<IntegerField, 4> kIntegers = {{
    {"hidden", &Hyperparameters::hidden, 0, Hyperparameters::kMaxHidden, "kMaxHidden"},
    {"epochs", &Hyperparameters::epochs, 1, Hyperparameters::kMaxEpochs, "kMaxEpochs"},
    {"batch_size", &Hyperparameters::batch_size, 1, Hyperparameters::kMaxBatchSize, "kMaxBatchSize"},
    {"patience", &Hyperparameters::patience, 0, Hyperparameters::kMaxEpochs, "kMaxEpochs"},
}};

struct RealField {
  const char* name;
  double Hyperparameters::*member;
  double min;
  bool min_open;
  double max;
  bool max_open;
};

constexpr std::array<RealField, 4> kReals = {{
    {"learning_rate", &Hyperparameters::learning_rate, 0, true, Hyperparameters::kMaxLearningRate, false},
    {"l2", &Hyperparameters::l2, 0, false, Hyperparameters::kMaxL2, false},
    {"validation_fraction", &Hyperparameters::validation_fraction, 0, false, 1, true},
    {"momentum", &Hyperparameters::momentum, 0, false, 1, true},
}};

std::string shortest(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string field(const char* name) { return std::string("field '") + name + "': "; }

std::string optimizer_choices() {
  std::string out;
  for (std::size_t i = 0; i < kOptimizers.size(); ++i)
    out += (i == 0 ? "'" : i + 1 == kOptimizers.size() ? " or '" : ", '") + std::string(kOptimizers[i].second) + "'";
  return out;
}

}  // namespace

std::string_view to_string(Optimizer o) noexcept {
  for (const auto& [value, name] : kOptimizers)
    if (value == o) return name;
  return "unknown";
}

std::optional<Optimizer> parse_optimizer(std::string_view name) noexcept {
  for (const auto& [value, n] : kOptimizers)
    if (n == name) return value;
  return std::nullopt;
}

const std::vector<std::string>& optimizer_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& entry : kOptimizers) v.emplace_back(entry.second);
    return v;
  }();
  return names;
}

std::vector<std::string> Hyperparameters::problems() const {
  std::vector<std::string> out;
  for (const auto& f : kIntegers) {
    const std::int64_t v = this->*f.member;
    if (v < f.min) out.push_back(field(f.name) + "must be >= " + std::to_string(f.min) + ", got " + std::to_string(v));
    else if (v > f.max)
      out.push_back(field(f.name) + "must be <= " + std::to_string(f.max) + " (the trainer's limit " + f.limit +
                    "), got " + std::to_string(v));
  }
  for (const auto& f : kReals) {
    const double v = this->*f.member;
    const bool low_ok = f.min_open ? v > f.min : v >= f.min;
    const bool high_ok = f.max_open ? v < f.max : v <= f.max;
    if (!(low_ok && high_ok)) {  // NaN fails both
      std::ostringstream range;
      range << (f.min_open ? "(" : "[") << f.min << ", " << f.max << (f.max_open ? ")" : "]");
      out.push_back(field(f.name) + "must be in " + range.str() + ", got " + shortest(v));
    }
  }
  if (to_string(optimizer) == "unknown")
    out.push_back(field("optimizer") + "must be " + optimizer_choices() + ", got value " +
                  std::to_string(static_cast<std::int32_t>(optimizer)));
  for (std::size_t i = 0; i < class_weights.size(); ++i)
    if (!(std::isfinite(class_weights[i]) && class_weights[i] > 0))
      out.push_back(field("class_weights") + "[" + std::to_string(i) + "] must be a finite number > 0, got " +
                    shortest(class_weights[i]));
  return out;
}

void Hyperparameters::validate(const std::string& who) const {
  const auto found = problems();
  if (found.empty()) return;
  std::string msg = who;
  for (std::size_t i = 0; i < found.size(); ++i) msg += (i == 0 ? ": " : "; ") + found[i];
  throw ConfigError(msg);
}

bool Hyperparameters::is_field(std::string_view key) noexcept {
  for (const auto& f : kIntegers)
    if (key == f.name) return true;
  for (const auto& f : kReals)
    if (key == f.name) return true;
  return key == "optimizer" || key == "class_weights";
}

void Hyperparameters::read_json(const json& fields, std::vector<std::string>& problems) {
  if (!fields.is_object()) return;
  for (const auto& f : kIntegers) {
    auto it = fields.find(f.name);
    if (it == fields.end()) continue;
    if (!it->is_number_integer()) {
      problems.push_back(field(f.name) + "must be an integer, got " + (it->is_number() ? it->dump() : it->type_name()));
    } else if (it->is_number_unsigned() && it->get<std::uint64_t>() > static_cast<std::uint64_t>(f.max)) {
      // Read as unsigned so that 2^64-1 is not mistaken for -1.
      problems.push_back(field(f.name) + "must be <= " + std::to_string(f.max) + " (the trainer's limit " + f.limit +
                         "), got " + it->dump());
    } else {
      this->*f.member = it->get<std::int64_t>();
    }
  }
  for (const auto& f : kReals) {
    auto it = fields.find(f.name);
    if (it == fields.end()) continue;
    if (!it->is_number()) problems.push_back(field(f.name) + "must be a number, got " + it->type_name());
    else this->*f.member = it->get<double>();
  }
  if (auto it = fields.find("optimizer"); it != fields.end() && !it->is_null()) {
    if (!it->is_string()) {
      problems.push_back(field("optimizer") + "must be a string, got " + it->type_name());
    } else if (auto o = parse_optimizer(it->get<std::string>())) {
      optimizer = *o;
    } else {
      problems.push_back(field("optimizer") + "must be " + optimizer_choices() + ", got " +
                         detail::quote_for_message(it->get<std::string>()));
    }
  }
  if (auto it = fields.find("class_weights"); it != fields.end() && !it->is_null()) {
    std::vector<double> weights;
    bool ok = it->is_array();
    if (ok)
      for (const auto& w : *it) {
        if (!w.is_number()) ok = false;
        else weights.push_back(w.get<double>());
      }
    if (ok) class_weights = std::move(weights);
    else problems.push_back(field("class_weights") + "must be a list of numbers, got " + it->dump());
  }
}

json Hyperparameters::to_json() const {
  // nlohmann's object is a sorted map, so the keys come out sorted.
  return {{"hidden", hidden},
          {"epochs", epochs},
          {"batch_size", batch_size},
          {"learning_rate", learning_rate},
          {"l2", l2},
          {"validation_fraction", validation_fraction},
          {"optimizer", std::string(to_string(optimizer))},
          {"momentum", momentum},
          {"patience", patience},
          {"class_weights", class_weights}};
}

std::map<std::string, std::string> Hyperparameters::params() const {
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
      {"optimizer", std::string(to_string(optimizer))},
      {"momentum", shortest(momentum)},
      {"patience", std::to_string(patience)},
      {"class_weights", cw},
  };
}

}  // namespace mlops
