// Feeds arbitrary bytes to ReleaseManifest::from_json. Any outcome but a manifest or a typed mlops error
// (a crash, a sanitizer report, another exception) is a finding. An accepted manifest must round-trip.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "mlops/error.hpp"
#include "mlops/manifest.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    auto m = mlops::ReleaseManifest::from_json(text);
    auto again = mlops::ReleaseManifest::from_json(m.to_json(), m.md5());
    if (!(again == m) || again.to_json() != m.to_json()) __builtin_trap();
  } catch (const mlops::DataError&) {
  } catch (const mlops::IntegrityError&) {
    __builtin_trap();  // the canonical form must always verify against its own MD5
  }
  return 0;
}
