/// @file mlops.hpp
/// Everything this build of mlops offers. Components left out at configure time are not included.
#pragma once

#include "mlops/adapter.hpp"
#include "mlops/config.hpp"
#include "mlops/dataset.hpp"
#include "mlops/error.hpp"
#include "mlops/featurizer.hpp"
#include "mlops/manifest.hpp"
#include "mlops/trainer.hpp"
#include "mlops/version.hpp"
#if MLOPS_WITH_DOLT
#include "mlops/dolt.hpp"
#include "mlops/table.hpp"
#endif
#if MLOPS_WITH_MLFLOW
#include "mlops/mlflow.hpp"
#include "mlops/serve.hpp"
#endif
#if MLOPS_WITH_PIPELINE
#include "mlops/catalog.hpp"
#include "mlops/pipeline.hpp"
#endif
