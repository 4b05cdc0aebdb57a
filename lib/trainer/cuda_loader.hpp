// Finds and loads the CUDA module (libmlops_cuda.so) at run time.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "trainer/cuda/abi.h"

namespace mlops::detail {

struct CudaModule {
  std::string path;
  mlops_cuda_device_count_fn device_count = nullptr;
  mlops_cuda_device_name_fn device_name = nullptr;
  mlops_cuda_train_fn train = nullptr;
};

/// The loaded module, or null with the reason in `why` (not built, not found, wrong ABI, dlopen error).
/// Looks at $MLOPS_CUDA_MODULE, then next to the code of libmlops (dladdr), then ../lib of that folder,
/// then the install and build locations recorded at configure time. Loaded once per process.
std::shared_ptr<const CudaModule> load_cuda_module(std::string& why);

/// The module at `path`, or null with the reason in `why`: dlopen fails, an entry point is missing, or
/// its interface version or the layout of its job structs (sizeof/offsetof) differs from this library's.
/// Not cached; the handle of a loaded module stays open for the life of the process.
std::shared_ptr<const CudaModule> load_cuda_module_from(const std::filesystem::path& path, std::string& why);

}  // namespace mlops::detail
