// The CUDA module's recording of a training step as a graph (capture.hpp), with stand-ins for the
// CUDA calls: whatever the step throws, capture ends before anything else happens on the stream.
#include <doctest/doctest.h>

#include <new>
#include <stdexcept>
#include <string>

#include "trainer/cuda/capture.hpp"

using mlops_cuda::capture_step;

namespace {

// A stream's capture state as the stand-ins for begin and end capture see it.
struct Stream {
  bool capturing = false;
  int ended = 0;
  std::string begin() {
    capturing = true;
    return "";
  }
  std::string end() {
    capturing = false;
    ++ended;
    return "";
  }
};

}  // namespace

TEST_CASE("capture ends on every exception from the step, only a launch failure falls back to direct launches") {
  Stream st;
  auto begin = [&] { return st.begin(); };
  auto end = [&] { return st.end(); };
  // A launch that cannot be captured: capture ends and the reason is returned.
  CHECK(capture_step(begin, [] { throw mlops_cuda::Failure(MLOPS_CUDA_ERR_DEVICE, "a launch"); }, end) == "a launch");
  CHECK_FALSE(st.capturing);
  // Any other exception ends the capture, then reaches the caller.
  CHECK_THROWS_AS(capture_step(begin, [] { throw std::bad_alloc(); }, end), std::bad_alloc);
  CHECK_FALSE(st.capturing);
  CHECK_THROWS_WITH_AS(capture_step(begin, [] { throw std::logic_error("a bug"); }, end), "a bug", std::logic_error);
  CHECK_FALSE(st.capturing);
  CHECK_THROWS_AS(capture_step(begin, [] { throw 3; }, end), int);
  CHECK_FALSE(st.capturing);
  CHECK(st.ended == 4);
  // Success, and an end that fails.
  CHECK(capture_step(begin, [] {}, end).empty());
  CHECK(capture_step(begin, [] {}, [&] { return st.end(), std::string("cudaStreamEndCapture: invalidated"); }) ==
        "cudaStreamEndCapture: invalidated");
  // A begin that fails: the step does not run and there is nothing to end.
  bool ran = false;
  CHECK(capture_step([] { return std::string("cudaStreamBeginCapture: not permitted"); }, [&] { ran = true; }, end) ==
        "cudaStreamBeginCapture: not permitted");
  CHECK_FALSE(ran);
  CHECK(st.ended == 6);
}
