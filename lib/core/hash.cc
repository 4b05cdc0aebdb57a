#include "core/hash.hpp"

#include <openssl/evp.h>

#include "mlops/error.hpp"

namespace mlops::detail {

struct Digest::Ctx {
  EVP_MD_CTX* ctx = nullptr;
  bool finished = false;
  ~Ctx() { EVP_MD_CTX_free(ctx); }
};

Digest::Digest(const char* algorithm) : ctx_(std::make_unique<Ctx>()) {
  const EVP_MD* md = EVP_get_digestbyname(algorithm);
  ctx_->ctx = EVP_MD_CTX_new();
  if (md == nullptr || ctx_->ctx == nullptr || EVP_DigestInit_ex(ctx_->ctx, md, nullptr) != 1)
    throw InternalError(std::string("OpenSSL cannot start a digest of type ") + algorithm);
}

Digest::~Digest() = default;

void Digest::update(const void* data, std::size_t size) {
  if (ctx_->finished) throw InternalError("digest updated after it was finished");
  if (size != 0 && EVP_DigestUpdate(ctx_->ctx, data, size) != 1)
    throw InternalError("OpenSSL digest update failed");
}

std::string Digest::hex() {
  if (ctx_->finished) throw InternalError("digest finished twice");
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx_->ctx, out, &len) != 1) throw InternalError("OpenSSL digest final failed");
  ctx_->finished = true;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex(2 * len, '0');
  for (unsigned i = 0; i < len; ++i) {
    hex[2 * i] = kHex[out[i] >> 4];
    hex[2 * i + 1] = kHex[out[i] & 0xF];
  }
  return hex;
}

std::string md5_hex(std::string_view bytes) {
  Digest d("MD5");
  d.update(bytes);
  return d.hex();
}

std::string sha256_hex(std::string_view bytes) {
  Digest d("SHA256");
  d.update(bytes);
  return d.hex();
}

}  // namespace mlops::detail
