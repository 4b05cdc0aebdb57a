// One parser for every URI the library handles: Dolt (mysql://, doltlite:), MLflow tracking URIs and
// CSV links (http, https, ftp, file). Parsed once; messages, lineage, tags and commit messages only ever
// carry `redacted()` (internal).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace mlops::detail {

/// A `scheme://[userinfo@]host[:port][/path][?query][#fragment]` URI split into its parts, each kept
/// as written (percent-escapes are not decoded here).
///
/// Where the userinfo ends is decided once, here, for the parser and the redactor alike: at the LAST
/// '@' of the text after "//". A password may therefore hold any printable character, '/', '?', '#',
/// ':', '%' and '@' included, and is never taken for a host, path or query; an '@' in a path, query or
/// fragment must be written `%40`. The user ends at the first ':' of the userinfo. The host ends at the
/// first '/', '?' or '#' after the userinfo.
struct Uri {
  std::string scheme;            ///< lower-case, without "://"
  bool has_userinfo = false;     ///< an '@' was present
  std::string user;              ///< as written
  bool has_password = false;     ///< a ':' was present in the userinfo
  std::string password;          ///< as written; a secret, never shown
  std::string host;              ///< as written; an IPv6 literal keeps its brackets
  bool has_port = false;         ///< a ':' followed the host
  std::string port;              ///< as written (not checked to be a number); may be empty
  std::string path;              ///< from the '/' after the host, as written; may be empty
  bool has_query = false;        ///< a '?' was present
  std::string query;             ///< without the '?'
  bool has_fragment = false;     ///< a '#' was present
  std::string fragment;          ///< without the '#'

  /// Splits `text` when it looks like `scheme://...` (scheme: a letter, then letters, digits, '+', '-',
  /// '.'); nothing otherwise (a file path, `doltlite:file.db`). Never throws.
  static std::optional<Uri> parse(std::string_view text);

  /// The URI with the whole userinfo replaced by "***" and the values of secret-looking query and
  /// fragment parameters (see is_secret_parameter) replaced by "***": the only form that may appear in
  /// messages, lineage, tags, metadata and logs.
  [[nodiscard]] std::string redacted() const;

  /// The URI without its userinfo (for a client that takes the credentials apart, such as libcurl).
  [[nodiscard]] std::string without_userinfo() const;

  /// `text` (a message from a server or a library about this URI) with every occurrence of this URI's
  /// secrets, as written and percent-decoded, replaced by "***".
  [[nodiscard]] std::string scrub(std::string_view text) const;

  /// host[:port] as written.
  [[nodiscard]] std::string authority() const;

  /// The last segment of the path, percent-decoded (empty when the path ends in '/').
  [[nodiscard]] std::string file_name() const;
};

/// Whether a query parameter named `key` carries a secret: password, passwd, pwd, token, access_token,
/// refresh_token, id_token, auth, authorization, key, api_key, apikey, secret, client_secret, signature,
/// sig, credential, session_token, security_token, code, with any prefix such as "X-Amz-" and in any case.
bool is_secret_parameter(std::string_view key);

/// `text` with every secret removed: a URI is redacted as Uri::redacted(); any other text that holds
/// "://" (an unparsable URI) is cut to its scheme; other text is returned as is.
std::string redact_uri(std::string_view text);

/// Decodes %XX escapes. A '%' not followed by two hex digits is kept as it is (a password written
/// without escaping still works).
std::string percent_decode(std::string_view text);

}  // namespace mlops::detail
