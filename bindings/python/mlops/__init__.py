"""mlops: versioned training data in Dolt, batched adapter training, MLflow lineage, hash-named releases.

The compiled core is ``mlops._core``; this package re-exports its public names and adds the pieces that
are plain Python (command line, progress bars, the MLflow model loader, notebook helpers). Components left
out of the build (Dolt, MLflow, the pipeline) are simply absent; ``mlops.components`` lists those present.
"""

from collections.abc import Mapping as _Mapping

from . import _core, local_server
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
    Featurizer,
    History,
    IntegrityError,
    InternalError,
    ManifestDiff,
    MlopsError,
    NotFoundError,
    ReleaseManifest,
    TrackingError,
    TrainedAdapter,
    redact_uri,
)

__version__: str = _core.__version__
#: Components this build has, e.g. ("dolt", "mlflow", "cuda").
components: tuple = tuple(c for c in _core.components.split(",") if c)

_Mapping.register(ReleaseManifest)

__all__ = [
    "Adapter", "AdapterSpec", "ConfigError", "ConflictError", "CudaTrainer", "DataError", "DataSourceError",
    "Dataset", "DeviceError", "EpochMetrics", "Featurizer", "History", "IntegrityError", "InternalError", "ManifestDiff",
    "MlopsError", "NotFoundError", "ReleaseManifest", "TrackingError", "TrainedAdapter",
    "components", "local_server", "redact_uri", "__version__",
]

if "dolt" in components:
    from ._core import Commit, Diff, DoltSource, MergeResult, Table

    __all__ += ["Commit", "Diff", "DoltSource", "MergeResult", "Table"]

    def _find_doltlite() -> None:
        # DoltLite's library ships in the `doltlite` wheel. Find the file without importing the package:
        # importing it swaps Python's own SQLite engine for the whole process.
        import importlib.util
        import os

        if os.environ.get("DOLTLITE_LIB"):
            return
        try:
            spec = importlib.util.find_spec("doltlite")
        except (ImportError, ValueError):
            return
        for folder in (spec.submodule_search_locations or []) if spec else []:
            lib = os.path.join(folder, "_lib", "libdoltlite.so")
            if os.path.isfile(lib):
                _core.set_default_doltlite_library(lib)
                return

    _find_doltlite()

if "mlflow" in components:
    from ._core import (ArtifactInfo, MlflowTracker, ModelVersion, RegisteredModel, Run, RunInfo, SourceInfo,
                        detect_source_info, tags)

    from ._core import Release, Server  # serving reads MLflow model directories

    __all__ += ["ArtifactInfo", "MlflowTracker", "ModelVersion", "RegisteredModel", "Release", "Run", "RunInfo",
                "Server", "SourceInfo", "detect_source_info", "tags"]

if hasattr(_core, "Pipeline"):
    from ._core import Catalog, CatalogEntry, Pipeline, Plan, PlanItem, ReleaseReport, TrainReport, load_catalog_table

    __all__ += ["Catalog", "CatalogEntry", "Pipeline", "Plan", "PlanItem", "ReleaseReport", "TrainReport",
                "load_catalog_table"]
