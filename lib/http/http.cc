#include "http/http.hpp"

#include <curl/curl.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <mutex>

#include "core/uri.hpp"
#include "mlops/error.hpp"

namespace mlops::detail {

void http_global_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) throw InternalError("libcurl failed to initialise");
  });
}

namespace {

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct FileCloser {
  void operator()(FILE* f) const {
    if (f) std::fclose(f);
  }
};

std::size_t write_to_file(char* data, std::size_t size, std::size_t n, void* user) {
  return std::fwrite(data, size, n, static_cast<FILE*>(user)) * size;
}

}  // namespace

void http_download(const std::string& url, const std::filesystem::path& dest, const TlsOptions& tls,
                   long timeout_seconds) {
  const auto uri = Uri::parse(url);
  const std::string shown = redact_uri(url);
  if (!uri || (uri->scheme != "http" && uri->scheme != "https"))
    throw ConfigError("not an http(s) URL: " + shown);
  // The credentials go to libcurl apart from the URL, so that libcurl and this library agree on them.
  const std::string plain = uri->without_userinfo();
  const std::string user = percent_decode(uri->user), password = percent_decode(uri->password);
  http_global_init();
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) throw InternalError("curl_easy_init failed");

  const auto dir = dest.has_parent_path() ? dest.parent_path() : std::filesystem::path(".");
  const auto tmp = dir / ("." + dest.filename().string() + ".download-" + std::to_string(::getpid()));
  std::unique_ptr<FILE, FileCloser> file(std::fopen(tmp.c_str(), "wb"));
  if (!file) throw ConfigError("cannot create " + tmp.string());

  char error[CURL_ERROR_SIZE] = {0};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, plain.c_str());
  if (uri->has_userinfo) {
    curl_easy_setopt(c, CURLOPT_USERNAME, user.c_str());
    curl_easy_setopt(c, CURLOPT_PASSWORD, password.c_str());
  }
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &write_to_file);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, file.get());
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_seconds);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, tls.verify ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, tls.verify ? 2L : 0L);
  if (!tls.ca_path.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, tls.ca_path.c_str());
  if (!tls.client_cert.empty()) curl_easy_setopt(c, CURLOPT_SSLCERT, tls.client_cert.c_str());
  if (!tls.client_key.empty()) curl_easy_setopt(c, CURLOPT_SSLKEY, tls.client_key.c_str());

  const CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  const bool flushed = std::fflush(file.get()) == 0 && ::fsync(fileno(file.get())) == 0;
  file.reset();
  std::string why;
  if (rc != CURLE_OK) why = error[0] ? error : curl_easy_strerror(rc);
  else if (status >= 400) why = "HTTP status " + std::to_string(status);
  else if (!flushed) why = "cannot write " + tmp.string();
  if (!why.empty()) {
    std::filesystem::remove(tmp);
    throw DataSourceError("download of " + shown + " failed: " + uri->scrub(why));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, dest, ec);
  if (ec) {
    std::filesystem::remove(tmp);
    throw ConfigError("cannot move the download to " + dest.string() + ": " + ec.message());
  }
}

}  // namespace mlops::detail
