#include "dolt/uri.hpp"

#include <charconv>
#include <cstdlib>
#include <filesystem>

#include "core/text.hpp"
#include "http/http.hpp"
#include "mlops/error.hpp"

namespace mlops::detail {

namespace {

std::string percent_decode(std::string_view s, const std::string& display, const char* part) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    unsigned v = 0;
    if (i + 2 >= s.size() || std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16).ptr != s.data() + i + 3)
      throw ConfigError("the " + std::string(part) + " of " + display + " has a bad %-escape");
    out += static_cast<char>(v);
    i += 2;
  }
  return out;
}

int parse_seconds(std::string_view v, const std::string& key, const std::string& display) {
  int n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || end != v.data() + v.size() || n <= 0)
    throw ConfigError(key + " in " + display + " must be a positive number of seconds");
  return n;
}

}  // namespace

SourceUri parse_source_uri(const std::string& uri) {
  SourceUri out;
  if (uri.empty()) throw ConfigError("the DoltSource URI is empty");
  if (uri.starts_with("mysql://")) {
    out.backend = Backend::Dolt;
    out.display = redact_url(uri);
    auto& cfg = out.mysql;
    std::string_view rest = std::string_view(uri).substr(8);
    std::string_view query;
    if (auto q = rest.find('?'); q != std::string_view::npos) {
      query = rest.substr(q + 1);
      rest = rest.substr(0, q);
    }
    std::string_view authority = rest, path;
    if (auto s = rest.find('/'); s != std::string_view::npos) {
      authority = rest.substr(0, s);
      path = rest.substr(s + 1);
    }
    if (auto at = authority.rfind('@'); at != std::string_view::npos) {
      std::string_view userinfo = authority.substr(0, at);
      authority = authority.substr(at + 1);
      if (auto c = userinfo.find(':'); c != std::string_view::npos) {
        cfg.user = percent_decode(userinfo.substr(0, c), out.display, "user");
        cfg.password = percent_decode(userinfo.substr(c + 1), out.display, "password");
      } else {
        cfg.user = percent_decode(userinfo, out.display, "user");
      }
    }
    if (cfg.password.empty())
      if (const char* env = std::getenv("MLOPS_DOLT_PASSWORD")) cfg.password = env;
    std::string_view host = authority, port;
    if (authority.starts_with("[")) {
      auto close = authority.find(']');
      if (close == std::string_view::npos) throw ConfigError("unclosed '[' in the host of " + out.display);
      host = authority.substr(1, close - 1);
      if (close + 1 < authority.size() && authority[close + 1] == ':') port = authority.substr(close + 2);
    } else if (auto c = authority.rfind(':'); c != std::string_view::npos) {
      host = authority.substr(0, c);
      port = authority.substr(c + 1);
    }
    if (!host.empty()) cfg.host = std::string(host);
    if (!port.empty()) {
      unsigned p = 0;
      auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
      if (ec != std::errc() || end != port.data() + port.size() || p == 0 || p > 65535)
        throw ConfigError("the port of " + out.display + " is not a number in 1-65535");
      cfg.port = p;
    }
    cfg.database = percent_decode(path, out.display, "database");
    if (cfg.database.empty()) throw ConfigError(out.display + " names no database (mysql://user@host:port/database)");
    while (!query.empty()) {
      auto amp = query.find('&');
      std::string_view kv = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
      if (kv.empty()) continue;
      auto eq = kv.find('=');
      std::string key(kv.substr(0, eq));
      std::string value = eq == std::string_view::npos ? std::string() : percent_decode(kv.substr(eq + 1), out.display, "query");
      for (auto& ch : key)
        if (ch == '_') ch = '-';
      if (key == "branch") out.branch = value;
      else if (key == "ssl-mode") {
        for (auto& ch : value) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
        if (value != "DISABLED" && value != "PREFERRED" && value != "REQUIRED" && value != "VERIFY-CA" &&
            value != "VERIFY_CA" && value != "VERIFY-IDENTITY" && value != "VERIFY_IDENTITY")
          throw ConfigError("ssl-mode in " + out.display +
                            " must be DISABLED, PREFERRED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY");
        for (auto& ch : value)
          if (ch == '-') ch = '_';
        cfg.ssl_mode = value;
      } else if (key == "ssl-ca") cfg.ssl_ca = value;
      else if (key == "ssl-cert") cfg.ssl_cert = value;
      else if (key == "ssl-key") cfg.ssl_key = value;
      else if (key == "unix-socket" || key == "socket") cfg.unix_socket = value;
      else if (key == "connect-timeout") cfg.connect_timeout_s = parse_seconds(value, key, out.display);
      else if (key == "read-timeout") cfg.read_timeout_s = parse_seconds(value, key, out.display);
      else if (key == "write-timeout") cfg.write_timeout_s = parse_seconds(value, key, out.display);
      else
        throw ConfigError("unknown option " + quote_for_message(key) + " in " + out.display +
                          " (known: branch, ssl-mode, ssl-ca, ssl-cert, ssl-key, unix_socket, connect-timeout, "
                          "read-timeout, write-timeout)");
    }
    if (cfg.user.empty()) throw ConfigError(out.display + " names no user (mysql://user@host:port/database)");
    // TLS is verified by default for a server across the network; loopback and a unix socket need none.
    const bool local = !cfg.unix_socket.empty() || cfg.host == "127.0.0.1" || cfg.host == "localhost" || cfg.host == "::1";
    if (cfg.ssl_mode.empty() && !local) cfg.ssl_mode = "VERIFY_IDENTITY";
    cfg.display = out.display;
    return out;
  }
  std::string path;
  if (uri.starts_with("doltlite://")) {
    path = uri.substr(11);
    if (!path.starts_with("/"))
      throw ConfigError("doltlite:// URIs take an absolute path (doltlite:///abs/file.db), got " + quote_for_message(uri, 300));
  } else if (uri.starts_with("doltlite:")) {
    path = uri.substr(9);
  } else if (uri.find("://") != std::string::npos) {
    throw ConfigError("unsupported DoltSource URI scheme in " + redact_url(uri) + " (use doltlite:, mysql:// or a path)");
  } else {
    path = uri;
  }
  if (path.empty()) throw ConfigError("the DoltSource URI " + quote_for_message(uri) + " names no file");
  if (path.find('\0') != std::string::npos || path.find('@') != std::string::npos || path.find('?') != std::string::npos)
    throw ConfigError("the DoltLite path " + quote_for_message(path, 300) + " contains '@', '?' or NUL");
  std::error_code ec;
  auto abs = std::filesystem::absolute(path, ec);
  out.path = ec ? path : abs.lexically_normal().string();
  out.display = "doltlite://" + out.path;
  return out;
}

}  // namespace mlops::detail
