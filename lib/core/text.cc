#include "core/text.hpp"

#include <cstdint>

namespace mlops::detail {

std::string quote_for_message(std::string_view text, std::size_t max_bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "'";
  const bool valid = !utf8_error(text).has_value();
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (i >= max_bytes) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7F || (c >= 0x80 && !valid)) {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('\'');
  return out;
}

std::optional<std::string> utf8_error(std::string_view text) {
  std::size_t i = 0;
  const std::size_t n = text.size();
  auto at = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  while (i < n) {
    const unsigned char c = at(i);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return "invalid lead byte at offset " + std::to_string(i);
    }
    if (i + len > n) return "truncated sequence at offset " + std::to_string(i);
    for (std::size_t k = 1; k < len; ++k) {
      const unsigned char cc = at(i + k);
      if ((cc & 0xC0) != 0x80) return "invalid continuation byte at offset " + std::to_string(i + k);
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return "overlong sequence at offset " + std::to_string(i);
    if (cp >= 0xD800 && cp <= 0xDFFF) return "surrogate code point at offset " + std::to_string(i);
    if (cp > 0x10FFFF) return "code point above U+10FFFF at offset " + std::to_string(i);
    i += len;
  }
  return std::nullopt;
}

std::optional<std::size_t> find_control_character(std::string_view text) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7F) return i;
    // C1 controls U+0080..U+009F are encoded as C2 80..C2 9F.
    if (c == 0xC2 && i + 1 < text.size()) {
      const auto d = static_cast<unsigned char>(text[i + 1]);
      if (d >= 0x80 && d <= 0x9F) return i;
    }
  }
  return std::nullopt;
}

}  // namespace mlops::detail
