#include "trainer/safetensors.hpp"

#include <bit>
#include <cstring>

#include <nlohmann/json.hpp>

#include "core/hash.hpp"
#include "core/text.hpp"
#include "mlops/error.hpp"

namespace mlops::detail {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

// SHA-256 over the tensor bytes and every metadata entry but the checksum itself (sorted by key, each
// as key NUL value NUL), so a changed byte anywhere that matters is detected.
std::string content_checksum(std::string_view data, const std::map<std::string, std::string>& metadata) {
  Digest d("SHA256");
  d.update(data);
  for (const auto& [k, v] : metadata) {
    if (k == "checksum") continue;
    d.update(k);
    d.update(std::string_view("\0", 1));
    d.update(v);
    d.update(std::string_view("\0", 1));
  }
  return "sha256:" + d.hex();
}

}  // namespace

std::string write_safetensors(const std::vector<TensorView>& tensors, std::map<std::string, std::string> metadata) {
  std::string data;
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  for (const auto& t : tensors) {
    std::size_t count = 1;
    for (auto s : t.shape) count *= s;
    if (count != t.data.size())
      throw InternalError("tensor '" + t.name + "' has " + std::to_string(t.data.size()) + " values, shape needs " +
                          std::to_string(count));
    const std::size_t begin = data.size();
    data.append(reinterpret_cast<const char*>(t.data.data()), t.data.size() * sizeof(float));
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {begin, data.size()}}};
  }
  metadata["checksum"] = content_checksum(data, metadata);
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  for (const auto& [k, v] : metadata) meta[k] = v;
  nlohmann::ordered_json full = nlohmann::ordered_json::object();
  full["__metadata__"] = meta;
  for (auto it = header.begin(); it != header.end(); ++it) full[it.key()] = it.value();
  std::string h = full.dump();
  while (h.size() % 8 != 0) h.push_back(' ');
  std::string out(8, '\0');
  const std::uint64_t n = h.size();
  std::memcpy(out.data(), &n, 8);
  out += h;
  out += data;
  return out;
}

SafetensorsFile read_safetensors(std::string_view bytes, const std::string& what) {
  auto fail = [&](const std::string& why) -> IntegrityError { return IntegrityError(what + ": " + why); };
  if (bytes.size() < 8) throw fail("truncated: " + std::to_string(bytes.size()) + " bytes, no safetensors header");
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  if (n > bytes.size() - 8)
    throw fail("truncated or corrupted: header claims " + std::to_string(n) + " bytes, file has " +
               std::to_string(bytes.size() - 8) + " after the length");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.substr(8, n));
  } catch (const nlohmann::json::exception& e) {
    throw fail("corrupted header (not JSON): " + quote_for_message(e.what(), 160));
  }
  if (!header.is_object()) throw fail("corrupted header: not a JSON object");
  const std::string_view data = bytes.substr(8 + n);
  SafetensorsFile out;
  std::size_t covered = 0;
  try {
    for (auto it = header.begin(); it != header.end(); ++it) {
      if (it.key() == "__metadata__") {
        if (!it.value().is_object()) throw fail("corrupted header: __metadata__ is not an object");
        for (auto m = it.value().begin(); m != it.value().end(); ++m) {
          if (!m.value().is_string()) throw fail("corrupted header: metadata " + quote_for_message(m.key()) + " is not a string");
          out.metadata[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      const auto& t = it.value();
      if (!t.is_object() || t.value("dtype", "") != "F32")
        throw fail("tensor " + quote_for_message(it.key()) + " is not float32 (dtype " + quote_for_message(t.value("dtype", std::string("?"))) + ")");
      LoadedTensor lt;
      lt.shape = t.at("shape").get<std::vector<std::size_t>>();
      const auto offs = t.at("data_offsets").get<std::vector<std::size_t>>();
      if (offs.size() != 2 || offs[0] > offs[1]) throw fail("tensor " + quote_for_message(it.key()) + " has bad data_offsets");
      std::size_t count = 1;
      for (auto s : lt.shape) count *= s;
      if (offs[1] - offs[0] != count * sizeof(float))
        throw fail("tensor " + quote_for_message(it.key()) + " has " + std::to_string(offs[1] - offs[0]) + " bytes, its shape needs " +
                   std::to_string(count * sizeof(float)));
      if (offs[1] > data.size())
        throw fail("truncated: tensor " + quote_for_message(it.key()) + " ends at byte " + std::to_string(offs[1]) + " of " +
                   std::to_string(data.size()) + " data bytes");
      lt.data.resize(count);
      if (count) std::memcpy(lt.data.data(), data.data() + offs[0], count * sizeof(float));
      covered = std::max(covered, offs[1]);
      out.tensors.emplace(it.key(), std::move(lt));
    }
  } catch (const nlohmann::json::exception& e) {
    throw fail("corrupted header: " + quote_for_message(e.what(), 160));
  }
  if (covered != data.size())
    throw fail("corrupted: " + std::to_string(data.size()) + " data bytes but the tensors cover " +
               std::to_string(covered));
  if (auto c = out.metadata.find("checksum"); c != out.metadata.end()) {
    const std::string got = content_checksum(data, out.metadata);
    if (c->second != got) throw fail("corrupted: checksum mismatch (stored " + c->second + ", computed " + got + ")");
  }
  return out;
}

}  // namespace mlops::detail
