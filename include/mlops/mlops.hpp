/// @file mlops.hpp
/// Everything this build of mlops offers. Components left out at configure time have no header here.
#pragma once

#include "mlops/config.hpp"
#include "mlops/dataset.hpp"
#include "mlops/error.hpp"
#include "mlops/manifest.hpp"
#include "mlops/version.hpp"
#if MLOPS_WITH_DOLT
#include "mlops/dolt.hpp"
#include "mlops/table.hpp"
#endif
