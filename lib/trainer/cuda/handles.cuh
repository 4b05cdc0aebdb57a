// Errors and RAII handles of the CUDA module (included by module.cu only): device and pinned buffers,
// stream, event, graph, the cuBLAS handle with its workspace, and the current-device guard.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

#include "trainer/cuda/abi.h"

namespace mlops_cuda {

// ---- Errors -------------------------------------------------------------------------------------------

struct Failure : std::runtime_error {
  int code;
  Failure(int c, const std::string& m) : std::runtime_error(m), code(c) {}
};

inline void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // clear a sticky launch error so the message is about this call
  throw Failure(e == cudaErrorMemoryAllocation ? MLOPS_CUDA_ERR_OOM : MLOPS_CUDA_ERR_DEVICE,
                std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

inline void check_blas(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  throw Failure(s == CUBLAS_STATUS_ALLOC_FAILED ? MLOPS_CUDA_ERR_OOM : MLOPS_CUDA_ERR_DEVICE,
                std::string(what) + ": cuBLAS status " + std::to_string(static_cast<int>(s)));
}

inline std::string mib(double bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024.0));
  return buf;
}

inline void write_message(char* out, size_t size, const std::string& m) {
  if (!out || size == 0) return;
  const size_t n = std::min(size - 1, m.size());
  std::memcpy(out, m.data(), n);
  out[n] = '\0';
}

// ---- RAII handles -------------------------------------------------------------------------------------

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(size_t count, const char* what) { allocate(count, what); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void allocate(size_t count, const char* what) {
    release();
    count_ = count;
    if (count == 0) return;
    const cudaError_t e = cudaMalloc(reinterpret_cast<void**>(&ptr_), count * sizeof(T));
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      throw Failure(e == cudaErrorMemoryAllocation ? MLOPS_CUDA_ERR_OOM : MLOPS_CUDA_ERR_DEVICE,
                    std::string("allocating ") + what + " (" + mib(double(count) * sizeof(T)) + ") failed: " +
                        cudaGetErrorString(e) + "; device has " + mib(double(free_b)) + " free of " +
                        mib(double(total_b)));
    }
  }
  void release() {
    if (ptr_) cudaFree(ptr_);
    ptr_ = nullptr;
    count_ = 0;
  }
  T* get() const { return ptr_; }
  size_t size() const { return count_; }

 private:
  T* ptr_ = nullptr;
  size_t count_ = 0;
};

template <typename T>
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer() {
    if (ptr_) cudaFreeHost(ptr_);
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  PinnedBuffer(size_t count, const char* what) { allocate(count, what); }
  void allocate(size_t count, const char* what) {
    if (ptr_) cudaFreeHost(ptr_);
    ptr_ = nullptr;
    if (count) check(cudaMallocHost(reinterpret_cast<void**>(&ptr_), count * sizeof(T)), what);
    count_ = count;
  }
  T* get() const { return ptr_; }
  T& operator[](size_t i) const { return ptr_[i]; }

 private:
  T* ptr_ = nullptr;
  size_t count_ = 0;
};

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate"); }
  ~Stream() {
    if (s) cudaStreamDestroy(s);
  }
};

// The cuBLAS handle and the fixed workspace it uses: the handle is destroyed first, then the workspace
// freed (cuBLAS may still use the workspace until cublasDestroy returns).
struct Blas {
  static constexpr size_t kWorkspace = 32u << 20;
  DeviceBuffer<char> workspace;
  cublasHandle_t h = nullptr;
  explicit Blas(cudaStream_t stream) {
    check_blas(cublasCreate(&h), "cublasCreate");
    try {
      check_blas(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");  // full FP32, no TF32
      check_blas(cublasSetAtomicsMode(h, CUBLAS_ATOMICS_NOT_ALLOWED), "cublasSetAtomicsMode");
      // A fixed workspace: required for graph capture and keeps the kernel choice stable. Set after the
      // stream because cublasSetStream resets the workspace to cuBLAS's own pool.
      check_blas(cublasSetStream(h, stream), "cublasSetStream");
      workspace.allocate(kWorkspace, "the cuBLAS workspace");
      check_blas(cublasSetWorkspace(h, workspace.get(), kWorkspace), "cublasSetWorkspace");
    } catch (...) {
      cublasDestroy(h);  // before the workspace member is freed
      throw;
    }
  }
  ~Blas() {
    if (h) cublasDestroy(h);
    h = nullptr;
  }
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;
};

// Makes `device` current for this thread and restores the caller's device on every exit.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) {
      cudaGetLastError();
      previous_ = -1;
    }
    check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceGuard() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

struct Event {
  cudaEvent_t e = nullptr;
  Event() { check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate"); }
  ~Event() {
    if (e) cudaEventDestroy(e);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
};

struct Graph {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ~Graph() {
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
  }
};

}  // namespace mlops_cuda
