"""An adapter logged to MLflow loads with mlflow.pyfunc and takes what `mlops serve` takes; its MLmodel tells
MLflow the input, the output and the Python it was logged with, and requirements.txt lists what the loader
imports."""

from __future__ import annotations

import sys

import pytest

import mlops

pytestmark = [
    pytest.mark.mlflow,
    pytest.mark.skipif("mlflow" not in mlops.components or "dolt" not in mlops.components,
                       reason="built without the mlflow or dolt component"),
    pytest.mark.filterwarnings("ignore:.*Any type hint:UserWarning"),
]

TEXTS = ["where is the parcel with my router", "I was charged twice for the kettle"]


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A text adapter trained on the demo tickets, logged and registered as pyfunc-text@champion."""
    from mlflow_server import mlflow_on
    from mlops import demo

    tmp = tmp_path_factory.mktemp("pyfunc")
    with mlflow_on("sqlite", tmp / "mlflow") as server:
        src = mlops.DoltSource(f"doltlite:{tmp / 'data.db'}", create=True)
        demo.init_demo(src, customers=1, rows_per_customer=80, seed=4)
        ds = src.dataset("tickets", label="intent", text="body", where="customer = ?", params=("customer-001",))
        [trained] = mlops.CudaTrainer(device="cpu").fit([mlops.AdapterSpec(name="pyfunc-text", dataset=ds, epochs=5)])
        tracker = mlops.MlflowTracker(server.url)
        with tracker.start_run("pyfunc", run_name="pyfunc-text") as run:
            run.log_adapter(trained)
        version = tracker.register("pyfunc-text", run, "model")
        tracker.set_alias("pyfunc-text", "champion", version)
        target = run.download_artifacts("model", tmp / "downloaded")
        yield {"trained": trained, "dir": target, "url": server.url}


def test_pyfunc_takes_columns_and_records_as_mlops_serve_does(logged, monkeypatch):
    import mlflow.pyfunc
    import pandas as pd

    monkeypatch.setenv("MLFLOW_TRACKING_URI", logged["url"])
    model = mlflow.pyfunc.load_model("models:/pyfunc-text@champion")
    expected = list(logged["trained"].adapter.predict(TEXTS))
    assert list(model.predict(pd.DataFrame({"body": TEXTS}))) == expected
    assert list(model.predict({"body": TEXTS})) == expected
    assert list(model.predict([{"body": t} for t in TEXTS])) == expected
    assert list(model.predict(TEXTS)) == expected and list(model.predict(pd.Series(TEXTS))) == expected
    # The loader without MLflow's schema handling in between takes the same.
    from mlops import pyfunc

    direct = pyfunc.load(logged["dir"])
    assert list(direct.predict({"body": TEXTS})) == expected
    assert list(direct.predict([{"body": t} for t in TEXTS])) == expected


def test_mlmodel_carries_a_signature_and_the_python_version(logged):
    from mlflow.models import Model

    meta = Model.load(str(logged["dir"]))
    assert meta.signature is not None
    # One text column by position: MLflow still passes a list or Series of texts through, as without one.
    assert meta.signature.inputs.to_dict() == [{"type": "string", "required": True}]
    assert meta.signature.outputs.to_dict() == [{"type": "string", "required": True}]
    version = ".".join(map(str, sys.version_info[:3]))
    assert meta.flavors["python_function"]["python_version"] == version


def test_requirements_list_what_the_loader_imports(logged):
    names = [line.split("==")[0] for line in (logged["dir"] / "requirements.txt").read_text().split()]
    assert names == ["mlops-dolt", "numpy", "pandas"]
    assert "safetensors" not in names
