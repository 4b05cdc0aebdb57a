// How the CUDA module records one training step as a graph, apart from the CUDA calls (plain C++, so
// that the CPU tests run it with stand-ins for them).
#pragma once

#include <exception>
#include <string>

#include "trainer/cuda/abi_guard.hpp"

namespace mlops_cuda {

/// Runs step() between begin() and end(), each of which returns "" or why it failed. Whatever step()
/// throws, end() runs before the exception goes on: a stream left in capture mode would fail every later
/// call on it. A Failure from step() is a launch that cannot be captured: its message is returned (the
/// caller then runs the step without a graph). Any other exception propagates. Returns "" on success.
template <typename Begin, typename Step, typename End>
std::string capture_step(Begin&& begin, Step&& step, End&& end) {
  std::string why = begin();
  if (!why.empty()) return why;
  std::exception_ptr thrown;
  try {
    step();
  } catch (...) {
    thrown = std::current_exception();
  }
  why = end();
  if (thrown) {
    try {
      std::rethrow_exception(thrown);
    } catch (const Failure& f) {
      return f.what();
    }
  }
  return why;
}

}  // namespace mlops_cuda
