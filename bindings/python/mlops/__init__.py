"""mlops: versioned training data in Dolt, batched adapter training, MLflow lineage, hash-named releases.

The compiled core is ``mlops._core``; this package re-exports its public names and adds the pieces that
are plain Python (command line, notebook display).
"""

from collections.abc import Mapping as _Mapping

from . import _core
from ._core import (
    ConfigError,
    ConflictError,
    DataError,
    DataSourceError,
    Dataset,
    DeviceError,
    IntegrityError,
    InternalError,
    ManifestDiff,
    MlopsError,
    NotFoundError,
    ReleaseManifest,
    TrackingError,
)

__version__: str = _core.__version__
#: Components this build has, e.g. ("dolt", "mlflow", "cuda").
components: tuple = tuple(c for c in _core.components.split(",") if c)

_Mapping.register(ReleaseManifest)

if hasattr(_core, "MlflowTracker"):
    from ._core import (  # noqa: F401
        ArtifactInfo,
        MlflowTracker,
        ModelVersion,
        Run,
        SourceInfo,
        detect_source_info,
    )

__all__ = [
    "ConfigError",
    "ConflictError",
    "DataError",
    "DataSourceError",
    "Dataset",
    "DeviceError",
    "IntegrityError",
    "InternalError",
    "ManifestDiff",
    "MlopsError",
    "NotFoundError",
    "ReleaseManifest",
    "TrackingError",
    "components",
    "__version__",
]
if hasattr(_core, "MlflowTracker"):
    __all__ += ["ArtifactInfo", "MlflowTracker", "ModelVersion", "Run", "SourceInfo", "detect_source_info"]
