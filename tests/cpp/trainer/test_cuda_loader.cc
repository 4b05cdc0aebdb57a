// The boundary between libmlops and its CUDA module, on every machine: the loader's checks of a module
// and the module's C entry points under every kind of failure, through a stand-in module built on the
// real module's boundary guard (fake_cuda_module/module.cc).
#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

#include "blobs.hpp"
#include "mlops/error.hpp"
#include "trainer/backend.hpp"
#include "trainer/cuda_loader.hpp"

using namespace mlops;

namespace {

// What the stand-in module does while this is alive.
struct FakeMode {
  explicit FakeMode(const char* mode) { setenv("MLOPS_FAKE_CUDA", mode, 1); }
  ~FakeMode() { unsetenv("MLOPS_FAKE_CUDA"); }
  FakeMode(const FakeMode&) = delete;
  FakeMode& operator=(const FakeMode&) = delete;
};

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("the loader refuses a CUDA module whose job structs are laid out differently, and says so") {
  std::string why;
  {
    FakeMode mode("layout");
    CHECK(detail::load_cuda_module_from(MLOPS_FAKE_CUDA_MODULE, why) == nullptr);
    CHECK(contains(why, MLOPS_FAKE_CUDA_MODULE));
    CHECK(contains(why, "lays out the job structs differently"));
    CHECK(contains(why, "value 3 of"));
  }
  why.clear();
  const auto module = detail::load_cuda_module_from(MLOPS_FAKE_CUDA_MODULE, why);
  CHECK(module != nullptr);
  CHECK(why.empty());
  CHECK(detail::load_cuda_module_from("/nonexistent/libmlops_cuda.so", why) == nullptr);
  CHECK(contains(why, "cannot load the CUDA module /nonexistent/libmlops_cuda.so"));
}

TEST_CASE("whatever the CUDA module throws reaches the caller as a DeviceError naming it, never as a crash") {
  std::string why;
  const auto module = detail::load_cuda_module_from(MLOPS_FAKE_CUDA_MODULE, why);
  REQUIRE(module != nullptr);
  AdapterSpec spec;
  spec.name = "a";
  spec.dataset = test::blobs(40, 4, 2, 1);
  spec.epochs = 1;
  spec.batch_size = 8;
  const std::vector<detail::AdapterPlan> plans = {detail::make_plan(spec, 0, 1)};
  auto fit = [&] {
    std::vector<std::string> notes;
    return detail::train_cuda(*module, 0, "cuda:0", 0, plans, {}, {}, 5, notes);
  };
  {
    FakeMode mode("throw-int");
    CHECK_THROWS_WITH_AS(fit(), "[mlops.device] cuda:0: an exception that is not a std::exception", DeviceError);
  }
  {
    FakeMode mode("bad-alloc");
    CHECK_THROWS_WITH_AS(fit(), "[mlops.device] cuda:0: out of host memory: out of host memory", DeviceError);
  }
  {
    // Pinned (page-locked) host memory that cannot be had is the host's shortage, not the device's.
    FakeMode mode("host-memory");
    try {
      fit();
      FAIL("no error");
    } catch (const DeviceError& e) {
      CHECK(contains(e.what(), "out of host memory: allocating pinned host memory for the step tables"));
      CHECK_FALSE(contains(e.what(), "device memory"));
    }
  }
  {
    FakeMode mode("name-throws");
    char name[128] = {0};
    CHECK(module->device_name(0, name, sizeof name) == 1);
    CHECK(std::string(name) == "an exception that is not a std::exception");
  }
  FakeMode mode("ok");
  CHECK(fit().size() == 1);
}
