// Feeds arbitrary bytes to the safetensors reader. Any outcome but a file or an IntegrityError is a
// finding, and so is an accepted file that does not survive a write and a second read unchanged.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>
#include <string_view>

#include "mlops/error.hpp"
#include "trainer/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace mlops::detail;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    const auto file = read_safetensors(bytes, "fuzz");
    std::vector<TensorView> views;
    for (const auto& [name, t] : file.tensors) views.push_back({name, t.shape, t.data});
    auto metadata = file.metadata;
    metadata.erase("checksum");
    const auto again = read_safetensors(write_safetensors(views, metadata), "fuzz again");
    if (again.tensors.size() != file.tensors.size()) __builtin_trap();
    for (const auto& [name, t] : file.tensors) {
      const auto& u = again.tensors.at(name);
      if (u.shape != t.shape || u.data.size() != t.data.size()) __builtin_trap();
      for (std::size_t i = 0; i < t.data.size(); ++i)
        if (std::memcmp(&u.data[i], &t.data[i], sizeof(float)) != 0) __builtin_trap();
    }
  } catch (const mlops::IntegrityError&) {
  }
  return 0;
}
