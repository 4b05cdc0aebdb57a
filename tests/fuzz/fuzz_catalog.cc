// Feeds arbitrary bytes to the catalog parsers (JSON and TOML). Any outcome but a catalog or a typed
// mlops error is a finding, and so is an accepted catalog whose JSON form reads back as another catalog.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "mlops/catalog.hpp"
#include "mlops/error.hpp"

namespace {

void check(const mlops::Catalog& c) {
  const auto json = c.to_json();
  const auto again = mlops::Catalog::from_json(json.dump());
  if (again.to_json() != json) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (bool toml : {false, true}) {
    try {
      check(toml ? mlops::Catalog::from_toml(text) : mlops::Catalog::from_json(text));
    } catch (const mlops::DataError&) {
    } catch (const mlops::ConfigError&) {
    }
  }
  return 0;
}
