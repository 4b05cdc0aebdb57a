// A stand-in for libmlops_cuda.so, built by the host compiler on the real module's C boundary guard
// (abi_guard.hpp), so that the loader's checks and the error paths through that boundary run without
// CUDA. MLOPS_FAKE_CUDA chooses what it does: "layout" reports a job struct layout that differs from the
// library's; "throw-int", "bad-alloc", "host-memory" make mlops_cuda_train fail that way; "name-throws"
// makes mlops_cuda_device_name throw; anything else trains nothing and succeeds.
#include <cstdlib>
#include <new>
#include <string>

#include "trainer/cuda/abi.h"
#include "trainer/cuda/abi_guard.hpp"

namespace {

std::string mode() {
  const char* m = std::getenv("MLOPS_FAKE_CUDA");
  return m ? m : "";
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int32_t mlops_cuda_abi_version(void) { return MLOPS_CUDA_ABI_VERSION; }

__attribute__((visibility("default"))) size_t mlops_cuda_abi_layout(uint64_t* out, size_t n) {
  const size_t count = mlops_cuda_abi_layout_of(out, n);
  if (mode() == "layout" && n > 3) out[3] += 4;  // MlopsCudaAdapter::rows four bytes further on
  return count;
}

__attribute__((visibility("default"))) int32_t mlops_cuda_device_count(char*, size_t) { return 1; }

__attribute__((visibility("default"))) int32_t mlops_cuda_device_name(int32_t, char* out, size_t out_size) {
  return mlops_cuda::guarded(out, out_size, 1, [&]() -> int32_t {
    if (mode() == "name-throws") throw 7;
    mlops_cuda::write_message(out, out_size, "Fake GPU");
    return 0;
  });
}

__attribute__((visibility("default"))) int32_t mlops_cuda_train(const MlopsCudaJob*, char* err, size_t err_size) {
  return mlops_cuda::guarded(err, err_size, MLOPS_CUDA_ERR_DEVICE, [&]() -> int32_t {
    const std::string m = mode();
    if (m == "throw-int") throw 42;
    if (m == "bad-alloc") throw std::bad_alloc();
    if (m == "host-memory")
      throw mlops_cuda::Failure(MLOPS_CUDA_ERR_HOST_MEMORY, "allocating pinned host memory for the step tables failed");
    return MLOPS_CUDA_OK;
  });
}

}  // extern "C"
