"""MLflow ``python_function`` loader for mlops adapters.

The model directory (``Run.log_adapter``, ``Run.log_model_file``) has one owner, the C++ unit
``lib/mlflow/model_dir.hpp``, whose header documents the layout this module reads: ``MLmodel`` (YAML whose
``flavors.python_function.data`` names the weights file, as a JSON-quoted scalar, and whose
``loader_module`` is this module), the weights file, ``requirements.txt`` and ``lineage.json``.
``mlflow.pyfunc.load_model("models:/<name>@<alias>")`` calls :func:`_load_pyfunc` with the weights file;
:func:`load` takes the directory itself. Serving needs only NumPy and the ``safetensors`` package.

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
    """A loaded adapter: ``predict`` returns class labels, ``predict_proba`` class probabilities."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from safetensors import safe_open

        DataError, IntegrityError = _errors()
        self.path = os.fspath(path)
        try:
            with safe_open(self.path, framework="numpy") as f:
                meta = dict(f.metadata() or {})
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (OSError, ValueError) as e:  # safetensors raises SafetensorError, a subclass of Exception
            raise IntegrityError(f"cannot read adapter weights {self.path!r}: {e}") from e
        except Exception as e:
            raise IntegrityError(f"cannot read adapter weights {self.path!r}: {e}") from e
        if meta.get("format") != FORMAT:
            raise IntegrityError(f"{self.path!r} is not an {FORMAT} file (format={meta.get('format')!r})")
        try:
            self.classes: list[str] = [str(c) for c in json.loads(meta["classes"])]
            self.hidden = int(meta.get("hidden", "0"))
            self.featurizer: dict = json.loads(meta.get("featurizer") or "{}")
            self.spec: dict = json.loads(meta.get("spec") or "{}")
            self.lineage: dict = json.loads(meta.get("lineage") or "{}")
        except (KeyError, ValueError) as e:
            raise IntegrityError(f"{self.path!r}: malformed metadata: {e}") from e
        names = ("W1", "b1", "W2", "b2") if self.hidden > 0 else ("W", "b")
        missing = [n for n in names if n not in tensors]
        if missing:
            raise IntegrityError(f"{self.path!r}: missing tensors {missing} for hidden={self.hidden}")
        self._t = {n: np.ascontiguousarray(tensors[n], dtype=np.float32) for n in names}
        k = len(self.classes)
        if self.hidden > 0:
            W1, b1, W2, b2 = (self._t[n] for n in names)
            ok = (W1.ndim == 2 and W1.shape[1] == self.hidden and b1.shape == (self.hidden,)
                  and W2.shape == (self.hidden, k) and b2.shape == (k,))
            self.n_features = int(W1.shape[0]) if W1.ndim == 2 else -1
        else:
            W, b = self._t["W"], self._t["b"]
            ok = W.ndim == 2 and W.shape[1] == k and b.shape == (k,)
            self.n_features = int(W.shape[0]) if W.ndim == 2 else -1
        if not ok or k == 0:
            raise IntegrityError(f"{self.path!r}: tensor shapes do not match {k} classes and hidden={self.hidden}")
        del DataError

    def _features(self, model_input: Any) -> np.ndarray:
        DataError, _ = _errors()
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - pandas is optional for serving
            pd = None
        if pd is not None and isinstance(model_input, pd.Series):
            model_input = model_input.to_frame().T if model_input.dtype != object else model_input.to_frame()
        if pd is not None and isinstance(model_input, pd.DataFrame):
            non_numeric = [c for c in model_input.columns if not pd.api.types.is_numeric_dtype(model_input[c])]
            if non_numeric:
                raise DataError(self._text_message(f"columns {non_numeric} are not numeric"))
            X = model_input.to_numpy(dtype=np.float32)
        else:
            arr = np.asarray(model_input)
            if arr.dtype.kind in "OUS":
                raise DataError(self._text_message(f"input has dtype {arr.dtype}"))
            if arr.dtype.kind not in "fiub":
                raise DataError(f"adapter input must be numeric, got dtype {arr.dtype}")
            X = arr.astype(np.float32, copy=False)
        if X.ndim != 2:
            raise DataError(f"adapter input must be 2-D (rows × {self.n_features} features), got shape {X.shape}")
        if X.shape[1] != self.n_features:
            raise DataError(f"adapter expects {self.n_features} features per row, got {X.shape[1]}")
        if not np.all(np.isfinite(X)):
            row = int(np.argwhere(~np.isfinite(X))[0][0])
            raise DataError(f"adapter input has a NaN or infinite value in row {row}")
        return X

    def _text_message(self, why: str) -> str:
        if self.featurizer:
            return (f"this adapter was trained on featurized text ({self.featurizer.get('kind', 'featurizer')}); "
                    f"the pyfunc accepts only the numeric features, and {why}: featurize the text first")
        return f"adapter input must be numeric features; {why}"

    def logits(self, model_input: Any) -> np.ndarray:
        X = self._features(model_input)
        t = self._t
        if self.hidden > 0:
            h = np.maximum(X @ t["W1"] + t["b1"], 0.0)
            return h @ t["W2"] + t["b2"]
        return X @ t["W"] + t["b"]

    def predict_proba(self, model_input: Any, params: Optional[dict] = None) -> np.ndarray:
        """Class probabilities, shape (rows, classes), in the order of ``classes``."""
        z = self.logits(model_input)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, model_input: Any, params: Optional[dict] = None):
        """Predicted class labels: a pandas Series for a DataFrame input, else a NumPy array of str."""
        idx = np.argmax(self.logits(model_input), axis=1)
        labels = np.asarray(self.classes, dtype=object)[idx]
        try:
            import pandas as pd

            if isinstance(model_input, pd.DataFrame):
                return pd.Series(labels, index=model_input.index, name="prediction")
        except ImportError:  # pragma: no cover
            pass
        return labels

    def __repr__(self) -> str:
        return (f"AdapterModel(features={self.n_features}, hidden={self.hidden}, "
                f"classes={len(self.classes)}, path={self.path!r})")


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
