#include "trainer/cuda_loader.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <vector>

#include "mlops/config.hpp"

#ifndef MLOPS_CUDA_MODULE_NAME
#define MLOPS_CUDA_MODULE_NAME "libmlops_cuda.so"
#endif

namespace mlops::detail {

namespace {

std::vector<std::filesystem::path> candidates() {
  namespace fs = std::filesystem;
  std::vector<fs::path> out;
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&load_cuda_module), &info) != 0 && info.dli_fname) {
    std::error_code ec;
    fs::path self = fs::weakly_canonical(fs::path(info.dli_fname), ec);
    if (ec) self = info.dli_fname;
    out.push_back(self.parent_path() / MLOPS_CUDA_MODULE_NAME);
    out.push_back(self.parent_path().parent_path() / "lib" / MLOPS_CUDA_MODULE_NAME);
  }
#ifdef MLOPS_CUDA_MODULE_INSTALL_PATH
  out.emplace_back(MLOPS_CUDA_MODULE_INSTALL_PATH);
#endif
#ifdef MLOPS_CUDA_MODULE_BUILD_PATH
  out.emplace_back(MLOPS_CUDA_MODULE_BUILD_PATH);
#endif
  return out;
}

std::shared_ptr<const CudaModule> try_load(const std::filesystem::path& path, std::string& why) {
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    why = "cannot load the CUDA module " + path.string() + ": " + (e ? e : "unknown dlopen error");
    return nullptr;
  }
  auto version = reinterpret_cast<mlops_cuda_abi_version_fn>(dlsym(h, "mlops_cuda_abi_version"));
  auto m = std::make_shared<CudaModule>();
  m->path = path.string();
  m->device_count = reinterpret_cast<mlops_cuda_device_count_fn>(dlsym(h, "mlops_cuda_device_count"));
  m->device_name = reinterpret_cast<mlops_cuda_device_name_fn>(dlsym(h, "mlops_cuda_device_name"));
  m->train = reinterpret_cast<mlops_cuda_train_fn>(dlsym(h, "mlops_cuda_train"));
  if (!version || !m->device_count || !m->device_name || !m->train) {
    why = "the CUDA module " + path.string() + " lacks the mlops entry points";
    dlclose(h);
    return nullptr;
  }
  if (version() != MLOPS_CUDA_ABI_VERSION) {
    why = "the CUDA module " + path.string() + " has interface version " + std::to_string(version()) +
          ", this library needs " + std::to_string(MLOPS_CUDA_ABI_VERSION);
    dlclose(h);
    return nullptr;
  }
  // The handle stays open for the life of the process: kernels and cuBLAS state live in it.
  return m;
}

}  // namespace

std::shared_ptr<const CudaModule> load_cuda_module(std::string& why) {
  static std::mutex mu;
  static bool tried = false;
  static std::shared_ptr<const CudaModule> module;
  static std::string reason;
  std::lock_guard lock(mu);
  if (!tried) {
    tried = true;
    if (!MLOPS_WITH_CUDA) {
      reason = "this build of mlops has no CUDA backend (configured with MLOPS_WITH_CUDA=OFF)";
    } else if (const char* env = std::getenv("MLOPS_CUDA_MODULE"); env && *env) {
      module = try_load(env, reason);
      if (!module) reason = "MLOPS_CUDA_MODULE: " + reason;
    } else {
      std::string tried_paths;
      for (const auto& p : candidates()) {
        std::error_code ec;
        if (!std::filesystem::exists(p, ec)) {
          tried_paths += (tried_paths.empty() ? "" : ", ") + p.string();
          continue;
        }
        module = try_load(p, reason);
        if (module) break;
      }
      if (!module && reason.empty()) reason = "the CUDA module was not found (looked at " + tried_paths + ")";
    }
  }
  why = reason;
  return module;
}

}  // namespace mlops::detail
