// A component a test talks to (DoltLite's library, the `mlflow` command): in CI (CI=true or CI=1) its absence
// fails the test, so a green run there means the component was tested; elsewhere the test says what is
// missing and passes over it.
#pragma once

#include <doctest/doctest.h>

#include <cstdlib>
#include <string>
#include <string_view>

namespace mlops::test {

inline bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && (std::string_view(ci) == "true" || std::string_view(ci) == "1");
}

// True when `present`; otherwise fails the test in CI or leaves a MESSAGE, and returns false.
inline bool require_component(bool present, const std::string& missing) {
  if (present) return true;
  if (in_ci()) {
    FAIL_CHECK(missing << " (CI is set: a missing component fails the run)");
  } else {
    MESSAGE(missing << ": not tested here");
  }
  return false;
}

}  // namespace mlops::test
