// HTTP through libcurl, shared by the components that talk to servers (internal).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace mlops::detail {

/// TLS settings; verification is on unless turned off explicitly.
struct TlsOptions {
  bool verify = true;        ///< verify the server's certificate and host name
  std::string ca_path;       ///< PEM bundle of trusted CAs (empty: the system's)
  std::string client_cert;   ///< PEM client certificate (empty: none)
  std::string client_key;    ///< PEM client key (empty: the key is in client_cert)
};

/// Initialises libcurl once per process (thread-safe). Every user of libcurl calls this first.
void http_global_init();

/// Streams the body of a GET of `url` (http or https) into `dest`, written atomically: on any failure
/// `dest` is untouched. Follows redirects.
/// @throws ConfigError for a URL that is not http(s)
/// `url` is parsed by Uri (its user and password go to libcurl apart from it).
/// @throws DataSourceError naming the redacted URL for a connection failure or an HTTP status >= 400
void http_download(const std::string& url, const std::filesystem::path& dest, const TlsOptions& tls = {},
                   long timeout_seconds = 120);

}  // namespace mlops::detail
