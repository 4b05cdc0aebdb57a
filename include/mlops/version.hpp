/// @file version.hpp
/// The library's version and the components it was built with.
#pragma once

#include <string>

#include "mlops/config.hpp"

namespace mlops {

/// "MAJOR.MINOR.PATCH" of the library that is linked (may differ from MLOPS_VERSION_STRING in a header
/// compiled against another version).
[[nodiscard]] std::string version();

/// Components of the linked library: {"dolt", "mlflow", "cuda"}, each present when built in.
[[nodiscard]] std::string components();

}  // namespace mlops
