"""mlops: versioned training data in Dolt, batched adapter training, MLflow lineage, hash-named releases.

The compiled core is ``mlops._core``; this package re-exports its public names and adds the pieces that
are plain Python (command line, notebook display).
"""

from collections.abc import Mapping as _Mapping

from . import _core
from ._core import (
    Adapter,
    AdapterSpec,
    ConfigError,
    ConflictError,
    CudaTrainer,
    DataError,
    DataSourceError,
    Dataset,
    DeviceError,
    EpochMetrics,
    History,
    IntegrityError,
    InternalError,
    ManifestDiff,
    MlopsError,
    NotFoundError,
    ReleaseManifest,
    TrackingError,
    TrainedAdapter,
)

__version__: str = _core.__version__
#: Components this build has, e.g. ("dolt", "mlflow", "cuda").
components: tuple = tuple(c for c in _core.components.split(",") if c)

_Mapping.register(ReleaseManifest)

__all__ = [
    "Adapter",
    "AdapterSpec",
    "ConfigError",
    "ConflictError",
    "CudaTrainer",
    "DataError",
    "DataSourceError",
    "Dataset",
    "DeviceError",
    "EpochMetrics",
    "History",
    "IntegrityError",
    "InternalError",
    "ManifestDiff",
    "MlopsError",
    "NotFoundError",
    "ReleaseManifest",
    "TrackingError",
    "TrainedAdapter",
    "components",
    "__version__",
]
