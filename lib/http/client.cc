#include "http/client.hpp"

#include <curl/curl.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <random>
#include <thread>

#include "mlops/error.hpp"

namespace mlops::detail {

double RetryPolicy::backoff(int n) const {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  double jitter = 0;
  if (backoff_jitter > 0) jitter = std::uniform_real_distribution<double>(0, backoff_jitter)(rng);
  return backoff_factor * std::pow(2.0, std::max(0, n - 1)) + jitter;
}

bool HttpResponse::retryable() const {
  if (status == 0) return true;
  return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

std::string url_escape(std::string_view text) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

struct HttpClient::Pool {
  std::mutex mutex;
  std::vector<CURL*> idle;
  ~Pool() {
    for (CURL* c : idle) curl_easy_cleanup(c);
  }
  CURL* acquire() {
    {
      std::lock_guard lock(mutex);
      if (!idle.empty()) {
        CURL* c = idle.back();
        idle.pop_back();
        return c;
      }
    }
    CURL* c = curl_easy_init();
    if (!c) throw InternalError("curl_easy_init failed");
    return c;
  }
  void release(CURL* c) {
    std::lock_guard lock(mutex);
    idle.push_back(c);
  }
};

namespace {

struct FileCloser {
  void operator()(FILE* f) const {
    if (f) std::fclose(f);
  }
};

struct Sink {
  std::string* body = nullptr;
  FILE* file = nullptr;
  long* status = nullptr;
  CURL* curl = nullptr;
  bool write_failed = false;
};

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  auto* sink = static_cast<Sink*>(user);
  const std::size_t bytes = size * n;
  long status = 0;
  curl_easy_getinfo(sink->curl, CURLINFO_RESPONSE_CODE, &status);
  // Only a successful body goes into the file; an error body is kept for its message.
  if (sink->file && status >= 200 && status < 300) {
    if (std::fwrite(data, 1, bytes, sink->file) != bytes) {
      sink->write_failed = true;
      return 0;
    }
    return bytes;
  }
  // An error body is only read for its message: keep its first MiB. A successful one is kept whole.
  if (status < 400 || sink->body->size() < (1u << 20)) sink->body->append(data, bytes);
  return bytes;
}

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  auto* response = static_cast<HttpResponse*>(user);
  const std::size_t bytes = size * n;
  std::string_view line(data, bytes);
  constexpr std::string_view kName = "retry-after:";
  if (line.size() > kName.size()) {
    std::string head(line.substr(0, kName.size()));
    for (auto& ch : head) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (head == kName) {
      std::string value(line.substr(kName.size()));
      char* end = nullptr;
      const double seconds = std::strtod(value.c_str(), &end);
      if (end != value.c_str() && seconds >= 0) response->retry_after = seconds;
    }
  }
  return bytes;
}

std::size_t on_read(char* buffer, std::size_t size, std::size_t n, void* user) {
  return std::fread(buffer, 1, size * n, static_cast<FILE*>(user));
}

}  // namespace

HttpClient::HttpClient(TlsOptions tls, HttpAuth auth, long timeout_seconds, RetryPolicy retry)
    : tls_(std::move(tls)),
      auth_(std::move(auth)),
      timeout_seconds_(timeout_seconds),
      retry_(retry),
      pool_(std::make_unique<Pool>()) {
  http_global_init();
}

HttpClient::~HttpClient() = default;

HttpResponse HttpClient::perform(const HttpRequest& request) {
  HttpResponse response;
  response.attempts = 1;
  CURL* c = pool_->acquire();
  struct Release {
    Pool* pool;
    CURL* c;
    ~Release() {
      curl_easy_reset(c);  // keeps the connection cache, drops the options
      pool->release(c);
    }
  } release{pool_.get(), c};

  std::unique_ptr<FILE, FileCloser> upload;
  std::unique_ptr<FILE, FileCloser> download;
  std::filesystem::path tmp;
  if (!request.upload_file.empty()) {
    upload.reset(std::fopen(request.upload_file.c_str(), "rb"));
    if (!upload) throw ConfigError("cannot read " + request.upload_file.string());
  }
  if (!request.download_file.empty()) {
    const auto& dest = request.download_file;
    const auto dir = dest.has_parent_path() ? dest.parent_path() : std::filesystem::path(".");
    tmp = dir / ("." + dest.filename().string() + ".part-" + std::to_string(::getpid()));
    download.reset(std::fopen(tmp.c_str(), "wb"));
    if (!download) throw ConfigError("cannot create " + tmp.string());
  }

  char error[CURL_ERROR_SIZE] = {0};
  Sink sink{&response.body, download.get(), nullptr, c, false};
  curl_slist* headers = nullptr;
  struct FreeHeaders {
    curl_slist** h;
    ~FreeHeaders() { curl_slist_free_all(*h); }
  } free_headers{&headers};

  curl_easy_setopt(c, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT,
                   std::min(reached_.load() ? 30L : kFirstConnectSeconds, timeout_seconds_));
  curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_seconds_);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &response);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, tls_.verify ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, tls_.verify ? 2L : 0L);
  if (!tls_.ca_path.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, tls_.ca_path.c_str());
  if (!tls_.client_cert.empty()) curl_easy_setopt(c, CURLOPT_SSLCERT, tls_.client_cert.c_str());
  if (!tls_.client_key.empty()) curl_easy_setopt(c, CURLOPT_SSLKEY, tls_.client_key.c_str());
  if (!auth_.username.empty() || !auth_.password.empty()) {
    curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(c, CURLOPT_USERNAME, auth_.username.c_str());
    curl_easy_setopt(c, CURLOPT_PASSWORD, auth_.password.c_str());
  } else if (!auth_.token.empty()) {
    const std::string bearer = "Authorization: Bearer " + auth_.token;
    headers = curl_slist_append(headers, bearer.c_str());
  }
  headers = curl_slist_append(headers, "Accept: application/json");
  headers = curl_slist_append(headers, "Expect:");

  if (upload) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(request.upload_file, ec);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, &on_read);
    curl_easy_setopt(c, CURLOPT_READDATA, upload.get());
    if (!ec) curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(size));
    headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
    if (request.method != "PUT") curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  } else if (request.method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else {
    headers = curl_slist_append(headers, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, request.body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
    if (request.method != "POST") curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);

  const CURLcode rc = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
  if (response.status != 0) reached_ = true;
  if (rc != CURLE_OK) {
    response.transport_error = error[0] ? error : curl_easy_strerror(rc);
    if (sink.write_failed) response.transport_error = "cannot write " + tmp.string();
    response.status = sink.write_failed ? response.status : 0;
  }
  if (download) {
    const bool ok = rc == CURLE_OK && response.status >= 200 && response.status < 300;
    const bool flushed = std::fflush(download.get()) == 0 && ::fsync(fileno(download.get())) == 0;
    download.reset();
    std::error_code ec;
    if (ok && flushed) {
      std::filesystem::rename(tmp, request.download_file, ec);
      if (ec) {
        std::filesystem::remove(tmp, ec);
        throw ConfigError("cannot move a download to " + request.download_file.string());
      }
    } else {
      std::filesystem::remove(tmp, ec);
      if (ok) throw ConfigError("cannot write " + request.download_file.string());
    }
  }
  return response;
}

HttpResponse HttpClient::send(const HttpRequest& request,
                              const std::function<std::optional<HttpResponse>()>& before_retry) {
  return send_loop(request, retry_.max_retries, before_retry);
}

HttpResponse HttpClient::send_with_retries(const HttpRequest& request, int max_retries) {
  return send_loop(request, max_retries, {});
}

HttpResponse HttpClient::send_loop(const HttpRequest& request, int max_retries,
                                   const std::function<std::optional<HttpResponse>()>& before_retry) {
  const auto start = std::chrono::steady_clock::now();
  HttpResponse response = perform(request);
  double waited = 0;
  for (int n = 1; n <= max_retries && response.retryable(); ++n) {
    double wait = retry_.backoff(n);
    if (response.retry_after >= 0) wait = std::min(response.retry_after, retry_.max_retry_after);
    if (!reached_ && retry_.first_contact_seconds > 0) {
      // Never answered: no retry that could end past the first-contact limit.
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const double attempt = static_cast<double>(std::min(kFirstConnectSeconds, timeout_seconds_));
      if (elapsed + wait + attempt > retry_.first_contact_seconds) break;
    }
    if (retry_.on_retry) retry_.on_retry(response, n, wait);
    std::this_thread::sleep_for(std::chrono::duration<double>(wait));
    waited += wait;
    if (before_retry) {
      if (auto done = before_retry()) {
        done->attempts = n;
        done->waited_seconds = waited;
        return *done;
      }
    }
    response = perform(request);
    response.attempts = n + 1;
    response.waited_seconds = waited;
  }
  return response;
}

}  // namespace mlops::detail
