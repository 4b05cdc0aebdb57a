#include "trainer/cuda_loader.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cstdint>
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

}  // namespace

std::shared_ptr<const CudaModule> load_cuda_module_from(const std::filesystem::path& path, std::string& why) {
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
  // The same version compiled with another layout of the job structs would read every field wrong.
  auto layout = reinterpret_cast<mlops_cuda_abi_layout_fn>(dlsym(h, "mlops_cuda_abi_layout"));
  constexpr std::size_t kMax = 64;
  std::uint64_t mine[kMax] = {}, theirs[kMax] = {};
  const std::size_t n_mine = mlops_cuda_abi_layout_of(mine, kMax);
  const std::size_t n_theirs = layout ? layout(theirs, kMax) : 0;
  if (n_theirs != n_mine || !std::equal(mine, mine + n_mine, theirs)) {
    std::size_t at = 0;
    while (at < std::min(n_mine, n_theirs) && mine[at] == theirs[at]) ++at;
    why = "the CUDA module " + path.string() + " lays out the job structs differently from this library (" +
          (layout ? "value " + std::to_string(at) + " of " + std::to_string(n_mine) + " differs" : "no layout entry point") +
          "): it was built against another mlops_cuda interface";
    dlclose(h);
    return nullptr;
  }
  // The handle stays open for the life of the process: its kernels and CUDA state live in it.
  return m;
}

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
      module = load_cuda_module_from(env, reason);
      if (!module) reason = "MLOPS_CUDA_MODULE: " + reason;
    } else {
      std::string tried_paths;
      for (const auto& p : candidates()) {
        std::error_code ec;
        if (!std::filesystem::exists(p, ec)) {
          tried_paths += (tried_paths.empty() ? "" : ", ") + p.string();
          continue;
        }
        module = load_cuda_module_from(p, reason);
        if (module) break;
      }
      if (!module && reason.empty()) reason = "the CUDA module was not found (looked at " + tried_paths + ")";
    }
  }
  why = reason;
  return module;
}

}  // namespace mlops::detail
