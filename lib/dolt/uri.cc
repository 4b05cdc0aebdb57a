#include "dolt/uri.hpp"

#include <charconv>
#include <cstdlib>
#include <filesystem>

#include "core/text.hpp"
#include "core/uri.hpp"
#include "mlops/error.hpp"

namespace mlops::detail {

namespace {

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
  const auto parsed = Uri::parse(uri);
  if (parsed && parsed->scheme == "mysql") {
    out.backend = Backend::Dolt;
    out.display = parsed->redacted();
    auto& cfg = out.mysql;
    if (parsed->has_fragment)
      throw ConfigError(out.display + " has a '#' outside its password (write it %23)");
    cfg.user = percent_decode(parsed->user);
    cfg.password = percent_decode(parsed->password);
    std::string_view query = parsed->query;
    std::string_view path = parsed->path;
    if (path.starts_with("/")) path.remove_prefix(1);
    if (cfg.password.empty())
      if (const char* env = std::getenv("MLOPS_DOLT_PASSWORD")) cfg.password = env;
    std::string_view host = parsed->host, port = parsed->port;
    if (host.starts_with("[")) {
      if (!host.ends_with("]")) throw ConfigError("unclosed '[' in the host of " + out.display);
      host = host.substr(1, host.size() - 2);
    }
    if (!host.empty()) cfg.host = std::string(host);
    if (!port.empty()) {
      unsigned p = 0;
      auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
      if (ec != std::errc() || end != port.data() + port.size() || p == 0 || p > 65535)
        throw ConfigError("the port of " + out.display + " is not a number in 1-65535");
      cfg.port = p;
    }
    cfg.database = percent_decode(path);
    if (cfg.database.empty()) throw ConfigError(out.display + " names no database (mysql://user@host:port/database)");
    while (!query.empty()) {
      auto amp = query.find('&');
      std::string_view kv = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
      if (kv.empty()) continue;
      auto eq = kv.find('=');
      std::string key(kv.substr(0, eq));
      std::string value = eq == std::string_view::npos ? std::string() : percent_decode(kv.substr(eq + 1));
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
    throw ConfigError("unsupported DoltSource URI scheme in " + redact_uri(uri) + " (use doltlite:, mysql:// or a path)");
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
