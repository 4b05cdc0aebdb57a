// Feeds arbitrary bytes to the CSV importer's parser and key check. Any outcome but parsed rows or a
// typed mlops error is a finding, and so is a row of another width than the header or a column typed as
// numbers whose values the importer's conversion refuses.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "dolt/csv.hpp"
#include "mlops/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto csv = mlops::detail::parse_csv(text, "CSV fuzz");
    if (csv.kinds.size() != csv.header.size() || csv.lines.size() != csv.rows.size()) __builtin_trap();
    for (const auto& row : csv.rows) {
      if (row.size() != csv.header.size()) __builtin_trap();
      for (std::size_t c = 0; c < row.size(); ++c) {
        if (!row[c]) continue;
        // The conversions the importer applies; they must not throw for a column typed as numbers.
        if (csv.kinds[c] == 'i') (void)std::stoll(*row[c]);
        else if (csv.kinds[c] == 'r') (void)std::stod(*row[c]);
      }
    }
    if (!csv.header.empty()) mlops::detail::check_csv_keys(csv, {csv.header.front()}, "CSV fuzz");
  } catch (const mlops::DataError&) {
  } catch (const mlops::ConfigError&) {
  }
  return 0;
}
