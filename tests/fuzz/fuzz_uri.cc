// Feeds arbitrary bytes to the URI parser, the redactor and the Dolt URI reader. Any outcome but a parse
// (or none) and a typed mlops error is a finding, and so is a redacted form that parses to another host,
// port or path, that still holds a userinfo, or that redacting again would change.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/uri.hpp"
#include "mlops/config.hpp"
#include "mlops/error.hpp"
#if MLOPS_WITH_DOLT
#include "dolt/uri.hpp"
#endif

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  using mlops::detail::Uri;
  const std::string shown = mlops::detail::redact_uri(text);
  if (mlops::detail::redact_uri(shown) != shown) __builtin_trap();
  if (const auto u = Uri::parse(text)) {
    const auto again = Uri::parse(shown);
    if (!again) __builtin_trap();
    if (again->host != u->host || again->port != u->port || again->path != u->path) __builtin_trap();
    if (again->has_userinfo && (again->user != "***" || again->has_password)) __builtin_trap();
    (void)u->scrub(text);
    (void)u->file_name();
    if (u->without_userinfo().find('@') != std::string::npos && u->has_userinfo) __builtin_trap();
  }
#if MLOPS_WITH_DOLT
  try {
    const auto s = mlops::detail::parse_source_uri(text);
    if (s.backend == mlops::detail::Backend::Dolt && s.display != shown) __builtin_trap();
  } catch (const mlops::ConfigError&) {
  }
#endif
  return 0;
}
