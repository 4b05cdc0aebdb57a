"""MLflow ``python_function`` loader for mlops adapters.

The model directory (``Run.log_adapter``, ``Run.log_model_file``) has one owner, the C++ unit
``lib/mlflow/model_dir.hpp``, whose header documents the layout this module reads: ``MLmodel`` (YAML whose
``flavors.python_function.data`` names the weights file, as a JSON-quoted scalar, and whose
``loader_module`` is this module), the weights file and ``requirements.txt``; the lineage is in MLmodel's ``metadata``.
``mlflow.pyfunc.load_model("models:/<name>@<alias>")`` calls :func:`_load_pyfunc` with the weights file;
:func:`load` takes the directory itself. Prediction is :class:`mlops.Adapter`'s, so the pyfunc,
``mlops serve`` and ``Adapter.predict`` give the same labels for the same input.

Input follows scikit-learn and MLflow: a text adapter takes raw text (a pandas DataFrame with the training
text column, a Series, a list or array of ``str``); a numeric adapter takes rows of its feature columns.
As ``mlops serve`` does, both also take columns as a dict (``{"body": [...]}``) and a list of records
(``[{"body": ...}, ...]``).
``predict`` returns the labels typed like the training labels (integers stay integers); ``predict_proba``
the class probabilities in the order of ``classes``.

Weights layout (``mlops.adapter.v1``, float32 little-endian): ``hidden == 0``: ``W`` [d, k], ``b`` [k];
``hidden > 0``: ``W1`` [d, h], ``b1`` [h], ``W2`` [h, k], ``b2`` [k]. ``__metadata__`` (strings):
``format``, ``classes`` (JSON list), ``hidden``, ``featurizer`` (JSON object), ``spec``, ``lineage``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

import numpy as np

FORMAT = "mlops.adapter.v1"
MLMODEL = "MLmodel"  # the model directory's description; its python_function `data` names the weights


def _errors():
    # The typed errors of mlops; imported late so that this module loads fast inside MLflow.
    from . import DataError, IntegrityError

    return DataError, IntegrityError


class AdapterModel:
    """A loaded adapter behind MLflow's pyfunc interface."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from . import Adapter

        self.path = os.fspath(path)
        self.adapter = Adapter.load(self.path)
        self.classes: list = list(self.adapter.classes)
        self.hidden: int = self.adapter.hidden
        self.n_features: int = self.adapter.features
        self.featurizer: dict = self.adapter.featurizer
        self.spec: dict = self.adapter.spec
        self.lineage: dict = self.adapter.lineage

    def _input(self, model_input: Any) -> Any:
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - pandas is optional outside MLflow
            return model_input
        # What `mlops serve` takes besides a DataFrame: columns ({"body": [...]}) and a list of records
        # ([{"body": ...}, ...]), as MLflow's scoring protocol carries them.
        if isinstance(model_input, dict):
            model_input = pd.DataFrame({k: v if isinstance(v, (list, tuple, np.ndarray, pd.Series)) else [v]
                                        for k, v in model_input.items()})
        elif isinstance(model_input, list) and model_input and all(isinstance(r, dict) for r in model_input):
            model_input = pd.DataFrame.from_records(model_input)
        elif (isinstance(model_input, pd.DataFrame) and len(model_input) == 1
              and all(isinstance(v, (list, tuple, np.ndarray)) for v in model_input.iloc[0])):
            # MLflow's schema check turns {"body": [...]} into one row holding the list: the columns again.
            model_input = pd.DataFrame({c: list(v) for c, v in model_input.iloc[0].items()})
        if isinstance(model_input, pd.DataFrame) and not self.adapter.takes_text:
            names = self.spec.get("features") if isinstance(self.spec, dict) else None
            if isinstance(names, list) and names and set(names) <= set(model_input.columns):
                model_input = model_input[names]  # the training order, whatever order the columns came in
            return np.ascontiguousarray(model_input.to_numpy(dtype=np.float32))
        if isinstance(model_input, np.ndarray) and model_input.dtype.kind in "fiub":
            return np.ascontiguousarray(model_input, dtype=np.float32)
        return model_input

    def predict_proba(self, model_input: Any, params: Optional[dict] = None) -> np.ndarray:
        """Class probabilities, float32 (rows, classes), in the order of ``classes``."""
        return self.adapter.predict_proba(self._input(model_input))

    def predict(self, model_input: Any, params: Optional[dict] = None) -> np.ndarray:
        """Predicted labels, a NumPy array typed like the training labels (so MLflow's scoring server
        answers ``{"predictions": [label, ...]}``, as ``mlops serve`` does)."""
        return self.adapter.predict(self._input(model_input))

    def __repr__(self) -> str:
        kind = "text" if self.adapter.takes_text else f"features={self.n_features}"
        return f"AdapterModel({kind}, hidden={self.hidden}, classes={len(self.classes)}, path={self.path!r})"


def load(path: str | os.PathLike[str]) -> AdapterModel:
    """Loads an adapter from a safetensors file, or from a model directory (reads its MLmodel)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, _weights_name(path))
    return AdapterModel(path)


def _weights_name(directory: str) -> str:
    """The weights file a model directory's MLmodel names (its python_function ``data``), read as
    ``model_dir::read`` reads it: the first ``data:`` line, its value a JSON string or plain text."""
    mlmodel = os.path.join(directory, MLMODEL)
    if os.path.exists(mlmodel):
        with open(mlmodel, encoding="utf-8") as f:
            for line in f:
                s = line.strip()
                if s.startswith("data:"):
                    value = s[len("data:"):].strip()
                    try:
                        name = json.loads(value)
                    except ValueError:
                        name = value
                    if not isinstance(name, str):
                        name = value
                    if name:
                        return name
    _, IntegrityError = _errors()
    raise IntegrityError(f"{directory!r} is not an mlops model directory (no MLmodel with a data entry)")


def _load_pyfunc(data_path: str) -> AdapterModel:
    """Entry point MLflow calls with the local path of the flavor's ``data`` (the weights file)."""
    return load(data_path)
