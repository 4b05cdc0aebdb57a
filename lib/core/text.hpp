// Text helpers shared by every concern (internal).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace mlops::detail {

/// `'text'` for an error message: control characters and invalid UTF-8 bytes shown as \xNN, long text cut.
std::string quote_for_message(std::string_view text, std::size_t max_bytes = 80);

/// Why `text` is not valid UTF-8 (overlong forms, surrogates and code points above U+10FFFF included),
/// or nothing when it is valid.
std::optional<std::string> utf8_error(std::string_view text);

/// Byte offset of the first control character (C0, DEL, or C1 U+0080–U+009F) in valid UTF-8 text.
std::optional<std::size_t> find_control_character(std::string_view text);

}  // namespace mlops::detail
