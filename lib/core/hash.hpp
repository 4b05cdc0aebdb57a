// Digests through OpenSSL's EVP interface (internal; public headers never include OpenSSL).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace mlops::detail {

/// Incremental digest; `algorithm` is an OpenSSL digest name ("MD5", "SHA256").
class Digest {
 public:
  explicit Digest(const char* algorithm);
  ~Digest();
  Digest(const Digest&) = delete;
  Digest& operator=(const Digest&) = delete;
  void update(const void* data, std::size_t size);
  void update(std::string_view bytes) { update(bytes.data(), bytes.size()); }
  /// Finishes the digest and returns it as lowercase hex. The object cannot be updated afterwards.
  std::string hex();

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

std::string md5_hex(std::string_view bytes);
std::string sha256_hex(std::string_view bytes);

}  // namespace mlops::detail
