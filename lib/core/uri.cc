#include "core/uri.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <vector>

namespace mlops::detail {

namespace {

char lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool valid_scheme(std::string_view s) {
  if (s.empty() || !std::isalpha(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.') return false;
  return true;
}

// key=value pairs separated by '&': the values of secret keys become "***".
std::string redact_parameters(std::string_view params) {
  std::string out;
  out.reserve(params.size());
  while (true) {
    const auto amp = params.find('&');
    const std::string_view kv = params.substr(0, amp);
    const auto eq = kv.find('=');
    if (eq != std::string_view::npos && is_secret_parameter(percent_decode(kv.substr(0, eq)))) {
      out += kv.substr(0, eq + 1);
      out += "***";
    } else {
      out += kv;
    }
    if (amp == std::string_view::npos) break;
    out += '&';
    params.remove_prefix(amp + 1);
  }
  return out;
}

}  // namespace

std::string percent_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size()) {
      const int hi = hex_value(text[i + 1]), lo = hex_value(text[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += text[i];
  }
  return out;
}

bool is_secret_parameter(std::string_view key) {
  std::string k;
  for (char c : key) k += lower(c);
  static constexpr std::array<std::string_view, 9> kAnywhere = {
      "token", "secret", "passw", "signature", "credential", "apikey", "api_key", "auth", "private"};
  for (auto word : kAnywhere)
    if (k.find(word) != std::string::npos) return true;
  const auto cut = k.find_last_of("-_.");
  const std::string_view last = cut == std::string::npos ? std::string_view(k) : std::string_view(k).substr(cut + 1);
  return last == "key" || last == "sig" || last == "pwd" || last == "pass" || last == "code" || last == "session";
}

std::optional<Uri> Uri::parse(std::string_view text) {
  const auto sep = text.find("://");
  if (sep == std::string_view::npos || !valid_scheme(text.substr(0, sep))) return std::nullopt;
  Uri u;
  for (char c : text.substr(0, sep)) u.scheme += lower(c);
  std::string_view rest = text.substr(sep + 3);
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = rest.substr(0, at);
    u.has_userinfo = true;
    const auto colon = userinfo.find(':');
    u.user = std::string(userinfo.substr(0, colon));
    if (colon != std::string_view::npos) {
      u.has_password = true;
      u.password = std::string(userinfo.substr(colon + 1));
    }
    rest.remove_prefix(at + 1);
  }
  const auto end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  rest = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  // host[:port], an IPv6 literal in brackets
  std::size_t colon = std::string_view::npos;
  if (authority.starts_with("[")) {
    const auto close = authority.find(']');
    if (close != std::string_view::npos && close + 1 < authority.size() && authority[close + 1] == ':')
      colon = close + 1;
  } else {
    colon = authority.rfind(':');
  }
  u.host = std::string(authority.substr(0, colon));
  if (colon != std::string_view::npos) {
    u.has_port = true;
    u.port = std::string(authority.substr(colon + 1));
  }
  const auto hash = rest.find('#');
  if (hash != std::string_view::npos) {
    u.has_fragment = true;
    u.fragment = std::string(rest.substr(hash + 1));
    rest = rest.substr(0, hash);
  }
  const auto q = rest.find('?');
  if (q != std::string_view::npos) {
    u.has_query = true;
    u.query = std::string(rest.substr(q + 1));
    rest = rest.substr(0, q);
  }
  u.path = std::string(rest);
  return u;
}

std::string Uri::authority() const { return has_port ? host + ":" + port : host; }

std::string Uri::without_userinfo() const {
  std::string out = scheme + "://" + authority() + path;
  if (has_query) out += "?" + query;
  if (has_fragment) out += "#" + fragment;
  return out;
}

std::string Uri::redacted() const {
  std::string out = scheme + "://";
  if (has_userinfo) out += "***@";
  out += authority() + path;
  if (has_query) out += "?" + redact_parameters(query);
  if (has_fragment) out += "#" + redact_parameters(fragment);
  return out;
}

std::string Uri::scrub(std::string_view text) const {
  std::vector<std::string> secrets;
  auto add = [&](const std::string& s) {
    if (s.size() < 4) return;  // shorter ones would garble the message and protect nothing
    secrets.push_back(s);
    secrets.push_back(percent_decode(s));
  };
  add(password);
  for (const std::string* params : {&query, &fragment}) {
    std::string_view rest = *params;
    while (!rest.empty()) {
      const auto amp = rest.find('&');
      const std::string_view kv = rest.substr(0, amp);
      const auto eq = kv.find('=');
      if (eq != std::string_view::npos && is_secret_parameter(percent_decode(kv.substr(0, eq))))
        add(std::string(kv.substr(eq + 1)));
      rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    }
  }
  // Longest first, so that a secret holding another is replaced whole.
  std::sort(secrets.begin(), secrets.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  std::string out(text);
  for (const auto& s : secrets) {
    if (s.empty()) continue;
    for (auto pos = out.find(s); pos != std::string::npos; pos = out.find(s, pos + 3)) out.replace(pos, s.size(), "***");
  }
  return out;
}

std::string Uri::file_name() const {
  const auto slash = path.rfind('/');
  return percent_decode(slash == std::string::npos ? std::string_view(path) : std::string_view(path).substr(slash + 1));
}

std::string redact_uri(std::string_view text) {
  if (auto u = Uri::parse(text)) return u->redacted();
  const auto sep = text.find("://");
  if (sep == std::string_view::npos) return std::string(text);
  return std::string(text.substr(0, sep)) + "://***";
}

}  // namespace mlops::detail
