// The C boundary of the CUDA module: its entry points return a code and write a message, and nothing
// (no C++ exception of any type) crosses into libmlops, which may use another C++ runtime. Plain C++, so
// that the CPU tests build a stand-in module on the same guard.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "trainer/cuda/abi.h"

namespace mlops_cuda {

/// A failure with the MLOPS_CUDA_ERR_* code the entry point returns.
struct Failure : std::runtime_error {
  int code;
  Failure(int c, const std::string& m) : std::runtime_error(m), code(c) {}
};

/// Copies `m` into out[size], truncated and NUL-terminated; allocates nothing.
inline void write_message(char* out, std::size_t size, const char* m) noexcept {
  if (!out || size == 0) return;
  const std::size_t n = m ? strnlen(m, size - 1) : 0;
  if (n) std::memcpy(out, m, n);
  out[n] = '\0';
}

/// Runs fn() (which returns the entry point's result) and turns every exception into a code and message.
template <typename Fn>
int32_t guarded(char* err, std::size_t err_size, int32_t unknown_code, Fn&& fn) noexcept {
  try {
    return fn();
  } catch (const Failure& f) {
    write_message(err, err_size, f.what());
    return f.code;
  } catch (const std::bad_alloc&) {
    write_message(err, err_size, "out of host memory");
    return MLOPS_CUDA_ERR_HOST_MEMORY;
  } catch (const std::exception& e) {
    write_message(err, err_size, e.what());
    return unknown_code;
  } catch (...) {
    write_message(err, err_size, "an exception that is not a std::exception");
    return unknown_code;
  }
}

}  // namespace mlops_cuda
