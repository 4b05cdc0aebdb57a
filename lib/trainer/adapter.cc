#include "mlops/adapter.hpp"

#include <algorithm>
#include <charconv>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/fs.hpp"
#include "core/parallel.hpp"
#include "core/text.hpp"
#include "mlops/error.hpp"
#include "trainer/cpu_math.hpp"
#include "trainer/safetensors.hpp"

namespace mlops {

namespace {

constexpr const char* kFormat = "mlops.adapter.v1";

detail::ParamLayout layout_of(const Adapter& a) { return {a.features(), a.hidden(), a.num_classes()}; }

// A canonical decimal int64: no sign but '-', no leading zeros, no spaces ("7", "-3", "0").
bool canonical_integer(const std::string& s, std::int64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return false;
  if (std::to_string(v) != s) return false;
  if (out) *out = v;
  return true;
}

std::vector<std::int32_t> argmax_rows(const std::vector<float>& p, std::size_t k) {
  const std::size_t rows = k ? p.size() / k : 0;
  std::vector<std::int32_t> idx(rows);
  for (std::size_t r = 0; r < rows; ++r) {
    const float* row = p.data() + r * k;
    idx[r] = static_cast<std::int32_t>(std::max_element(row, row + k) - row);
  }
  return idx;
}

}  // namespace

Adapter::Adapter(std::size_t features, std::size_t hidden, std::vector<std::string> classes, std::vector<float> weights,
                 nlohmann::json featurizer, nlohmann::json spec, nlohmann::json lineage)
    : features_(features),
      hidden_(hidden),
      classes_(std::move(classes)),
      weights_(std::move(weights)),
      featurizer_(std::move(featurizer)),
      spec_(std::move(spec)),
      lineage_(std::move(lineage)) {
  if (features_ == 0) throw DataError("adapter: features must be >= 1");
  if (classes_.size() < 2) throw DataError("adapter: needs at least 2 classes, got " + std::to_string(classes_.size()));
  const auto want = layout_of(*this).size();
  if (weights_.size() != want)
    throw DataError("adapter: " + std::to_string(weights_.size()) + " weights given, shapes (features " +
                    std::to_string(features_) + ", hidden " + std::to_string(hidden_) + ", classes " +
                    std::to_string(classes_.size()) + ") need " + std::to_string(want));
  for (std::size_t i = 0; i < weights_.size(); ++i)
    if (!std::isfinite(weights_[i])) throw DataError("adapter: weight " + std::to_string(i) + " is not finite");
  if (featurizer_.is_null()) featurizer_ = nlohmann::json::object();
  if (!featurizer_.is_object()) throw DataError("adapter: featurizer must be a JSON object");
  if (Featurizer::is_text(featurizer_)) {
    try {
      text_featurizer_ = Featurizer::from_settings(featurizer_);
    } catch (const ConfigError& e) {
      throw DataError("adapter: " + std::string(e.detail()));
    }
    if (static_cast<std::size_t>(text_featurizer_->dimension()) != features_)
      throw DataError("adapter: featurizer dimension " + std::to_string(text_featurizer_->dimension()) +
                      " differs from the adapter's " + std::to_string(features_) + " features");
  }
  std::vector<std::int64_t> ints(classes_.size());
  integer_labels_ = true;
  for (std::size_t i = 0; i < classes_.size() && integer_labels_; ++i)
    integer_labels_ = canonical_integer(classes_[i], &ints[i]);
  classes_json_ = integer_labels_ ? nlohmann::json(ints) : nlohmann::json(classes_);
}

const Featurizer& Adapter::text_featurizer() const {
  if (!text_featurizer_)
    throw DataError("this adapter was trained on numeric feature columns, not text: pass rows of " +
                    std::to_string(features_) + " numbers");
  return *text_featurizer_;
}

std::vector<float> Adapter::featurize(std::span<const std::string> texts) const {
  return text_featurizer().transform(texts);
}

std::vector<float> Adapter::predict_proba(std::span<const std::string> texts) const {
  const auto X = featurize(texts);
  return predict_proba(X, texts.size());
}

std::vector<std::int32_t> Adapter::predict_indices(std::span<const float> X, std::size_t rows) const {
  return argmax_rows(predict_proba(X, rows), classes_.size());
}

std::vector<std::int32_t> Adapter::predict_indices(std::span<const std::string> texts) const {
  return argmax_rows(predict_proba(texts), classes_.size());
}

std::vector<std::string> Adapter::predict(std::span<const float> X, std::size_t rows) const {
  std::vector<std::string> out;
  for (auto i : predict_indices(X, rows)) out.push_back(classes_[static_cast<std::size_t>(i)]);
  return out;
}

std::vector<std::string> Adapter::predict(std::span<const std::string> texts) const {
  std::vector<std::string> out;
  for (auto i : predict_indices(texts)) out.push_back(classes_[static_cast<std::size_t>(i)]);
  return out;
}

nlohmann::json Adapter::labels_json(std::span<const std::int32_t> indices) const {
  auto out = nlohmann::json::array();
  for (auto i : indices) {
    if (i < 0 || static_cast<std::size_t>(i) >= classes_.size())
      throw DataError("class index " + std::to_string(i) + " is out of range for " + std::to_string(classes_.size()) +
                      " classes");
    out.push_back(classes_json_[static_cast<std::size_t>(i)]);
  }
  return out;
}

std::vector<std::string> Adapter::tensor_names() const {
  if (hidden_ == 0) return {"W", "b"};
  return {"W1", "b1", "W2", "b2"};
}

std::span<const float> Adapter::tensor(const std::string& name, std::vector<std::size_t>* shape) const {
  const auto L = layout_of(*this);
  std::size_t off = 0;
  std::vector<std::size_t> s;
  if (hidden_ == 0 && name == "W") off = L.w1(), s = {L.d, L.k};
  else if (hidden_ == 0 && name == "b") off = L.b1(), s = {L.k};
  else if (hidden_ > 0 && name == "W1") off = L.w1(), s = {L.d, L.h};
  else if (hidden_ > 0 && name == "b1") off = L.b1(), s = {L.h};
  else if (hidden_ > 0 && name == "W2") off = L.w2(), s = {L.h, L.k};
  else if (hidden_ > 0 && name == "b2") off = L.b2(), s = {L.k};
  else throw NotFoundError("adapter has no tensor " + detail::quote_for_message(name));
  std::size_t n = 1;
  for (auto v : s) n *= v;
  if (shape) *shape = s;
  return std::span<const float>(weights_).subspan(off, n);
}

std::vector<float> Adapter::predict_proba(std::span<const float> X, std::size_t rows) const {
  if (weights_.empty()) throw DataError("adapter is empty (default-constructed)");
  if (X.size() != rows * features_)
    throw DataError("adapter: field X has " + std::to_string(X.size()) + " values; " + std::to_string(rows) +
                    " rows of width " + std::to_string(features_) + " need " + std::to_string(rows * features_));
  const auto L = layout_of(*this);
  std::vector<float> Z(rows * L.k);
  std::vector<float> H(L.h ? rows * L.h : 0);
  constexpr std::size_t kChunk = 4096;
  for (std::size_t r = 0; r < rows; r += kChunk) {
    const std::size_t m = std::min(kChunk, rows - r);
    detail::forward(L, weights_.data(), X.data() + r * L.d, m, H.data() ? H.data() + r * L.h : nullptr, Z.data() + r * L.k);
  }
  detail::softmax_rows(Z.data(), rows, L.k);
  return Z;
}

std::vector<std::vector<float>> Adapter::predict_proba_many(std::span<const Adapter* const> adapters,
                                                            std::span<const float> X, std::size_t rows,
                                                            unsigned threads) {
  for (std::size_t i = 0; i < adapters.size(); ++i) {
    if (!adapters[i]) throw DataError("adapter " + std::to_string(i) + " is null");
    if (adapters[i]->features() * rows != X.size())
      throw DataError("adapter " + std::to_string(i) + ": width " + std::to_string(adapters[i]->features()) +
                      " does not match X (" + std::to_string(X.size()) + " values for " + std::to_string(rows) +
                      " rows)");
  }
  std::vector<std::vector<float>> out(adapters.size());
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  threads = static_cast<unsigned>(std::min<std::size_t>(threads, adapters.size()));
  detail::blas_single_threaded();
  detail::parallel_for(adapters.size(), threads,
                       [&](std::size_t i) { out[i] = adapters[i]->predict_proba(X, rows); });
  return out;
}

std::string Adapter::to_bytes() const {
  if (weights_.empty()) throw DataError("adapter is empty (default-constructed); nothing to save");
  std::vector<detail::TensorView> views;
  for (const auto& name : tensor_names()) {
    detail::TensorView v;
    v.name = name;
    v.data = tensor(name, &v.shape);
    views.push_back(std::move(v));
  }
  std::map<std::string, std::string> meta{{"format", kFormat},
                                          {"classes", classes_json_.dump()},
                                          {"hidden", std::to_string(hidden_)},
                                          {"featurizer", featurizer_.dump()},
                                          {"spec", spec_.dump()},
                                          {"lineage", lineage_.dump()}};
  return detail::write_safetensors(views, std::move(meta));
}

void Adapter::save(const std::filesystem::path& path) const { detail::write_file_atomically(path, to_bytes()); }

Adapter Adapter::from_bytes(std::string_view bytes, const std::string& what) {
  auto file = detail::read_safetensors(bytes, what);
  auto fail = [&](const std::string& why) { return IntegrityError(what + ": " + why); };
  auto meta = [&](const char* key) -> const std::string& {
    auto it = file.metadata.find(key);
    if (it == file.metadata.end()) throw fail(std::string("not an mlops adapter: metadata '") + key + "' is missing");
    return it->second;
  };
  // Files of this format always carry the checksum; without it a corrupted metadata value could pass.
  (void)meta("checksum");
  if (meta("format") != kFormat)
    throw fail("not an mlops adapter: format is " + detail::quote_for_message(meta("format")) + ", expected " + kFormat);
  nlohmann::json classes, featurizer, spec, lineage;
  std::size_t hidden = 0;
  try {
    classes = nlohmann::json::parse(meta("classes"));
    featurizer = nlohmann::json::parse(meta("featurizer"));
    spec = nlohmann::json::parse(meta("spec"));
    lineage = nlohmann::json::parse(meta("lineage"));
    const auto& h = meta("hidden");
    std::size_t pos = 0;
    hidden = std::stoull(h, &pos);
    if (pos != h.size()) throw std::invalid_argument(h);
  } catch (const IntegrityError&) {
    throw;
  } catch (const std::exception& e) {
    throw fail("corrupted metadata: " + detail::quote_for_message(e.what(), 160));
  }
  if (!classes.is_array()) throw fail("corrupted metadata: classes is not a JSON list");
  std::vector<std::string> cls;
  for (const auto& c : classes) {
    if (c.is_string()) cls.push_back(c.get<std::string>());
    else if (c.is_number_integer()) cls.push_back(c.dump());
    else throw fail("corrupted metadata: a class label is neither text nor an integer");
  }
  const std::vector<std::string> names =
      hidden == 0 ? std::vector<std::string>{"W", "b"} : std::vector<std::string>{"W1", "b1", "W2", "b2"};
  for (const auto& n : names)
    if (!file.tensors.count(n)) throw fail("tensor '" + n + "' is missing");
  if (file.tensors.size() != names.size()) throw fail("unexpected tensors for hidden=" + std::to_string(hidden));
  const auto& first = file.tensors.at(names[0]);
  if (first.shape.size() != 2) throw fail("tensor '" + names[0] + "' is not 2-dimensional");
  const std::size_t d = first.shape[0];
  const std::size_t k = cls.size();
  const detail::ParamLayout L{d, hidden, k};
  auto expect = [&](const std::string& n, std::vector<std::size_t> shape) {
    if (file.tensors.at(n).shape != shape) throw fail("tensor '" + n + "' has the wrong shape for " + std::to_string(k) + " classes");
  };
  std::vector<float> w;
  w.reserve(L.size());
  if (hidden == 0) {
    expect("W", {d, k});
    expect("b", {k});
  } else {
    expect("W1", {d, hidden});
    expect("b1", {hidden});
    expect("W2", {hidden, k});
    expect("b2", {k});
  }
  for (const auto& n : names) {
    const auto& t = file.tensors.at(n).data;
    w.insert(w.end(), t.begin(), t.end());
  }
  try {
    return Adapter(d, hidden, std::move(cls), std::move(w), std::move(featurizer), std::move(spec), std::move(lineage));
  } catch (const DataError& e) {
    throw fail(std::string("invalid contents: ") + std::string(e.detail()));
  }
}

Adapter Adapter::load(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw NotFoundError("adapter file " + detail::quote_for_message(path.string(), 200) + " does not exist");
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw NotFoundError("adapter file " + detail::quote_for_message(path.string(), 200) +
                        " cannot be opened: " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return from_bytes(ss.str(), "adapter file " + detail::quote_for_message(path.string(), 200));
}

}  // namespace mlops
