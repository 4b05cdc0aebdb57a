// Errors and RAII handles of the CUDA module (included by module.cu only): device and pinned buffers,
// stream, event, graph, and the guard that restores the calling thread's CUDA context.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

#include "trainer/cuda/abi.h"
#include "trainer/cuda/abi_guard.hpp"

namespace mlops_cuda {

// ---- Errors -------------------------------------------------------------------------------------------

inline void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // clear a sticky launch error so the message is about this call
  throw Failure(e == cudaErrorMemoryAllocation ? MLOPS_CUDA_ERR_OOM : MLOPS_CUDA_ERR_DEVICE,
                std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

inline std::string mib(double bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024.0));
  return buf;
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
    if (count == 0) return;
    const cudaError_t e = cudaMallocHost(reinterpret_cast<void**>(&ptr_), count * sizeof(T));
    if (e != cudaSuccess) {
      ptr_ = nullptr;
      cudaGetLastError();
      // Page-locked host memory, limited by the host (RAM, RLIMIT_MEMLOCK), not by the device.
      throw Failure(e == cudaErrorMemoryAllocation ? MLOPS_CUDA_ERR_HOST_MEMORY : MLOPS_CUDA_ERR_DEVICE,
                    std::string("allocating pinned host memory for ") + what + " (" + mib(double(count) * sizeof(T)) +
                        ") failed: " + cudaGetErrorString(e));
    }
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

// Makes `device` current for this thread and, on every exit, gives the thread back the CUDA context it
// had: the same context, or none at all. (The runtime's cudaGetDevice answers 0 for a thread that never
// chose a device, and restoring that with cudaSetDevice(0) would create a context on GPU 0 after a job on
// another GPU.) The driver's context calls are reached through the runtime, so the module needs no link
// to libcuda.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    void* get = nullptr;
    void* set = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuCtxGetCurrent", &get, 12000, cudaEnableDefault, &found) == cudaSuccess &&
        found == cudaDriverEntryPointSuccess &&
        cudaGetDriverEntryPointByVersion("cuCtxSetCurrent", &set, 12000, cudaEnableDefault, &found) == cudaSuccess &&
        found == cudaDriverEntryPointSuccess &&
        reinterpret_cast<CUresult (*)(CUcontext*)>(get)(&previous_) == CUDA_SUCCESS) {
      set_current_ = reinterpret_cast<CUresult (*)(CUcontext)>(set);
    }
    cudaGetLastError();
    check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceGuard() {
    if (set_current_) set_current_(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  CUcontext previous_ = nullptr;
  CUresult (*set_current_)(CUcontext) = nullptr;
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
