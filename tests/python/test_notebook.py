"""The quickstart notebook runs top to bottom against DoltLite and a local MLflow server."""

import pathlib

import pytest

import mlops

ROOT = pathlib.Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.skipif(not hasattr(mlops, "Pipeline"), reason="built without the pipeline component"),
    pytest.mark.slow,
]


def test_quickstart_notebook_executes(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "examples" / "notebooks" / "quickstart.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = {i: "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in c.get("outputs", []))
               for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    text = "\n".join(outputs.values())
    assert "registry.example.com/adapters:" in text
    assert "customer-002: +" in text
    assert "[('customer-002', ['data changed" in text
    assert "[('customer-002', ['data slice changed: +" in text  # the preview before the merge: only that slice
    assert "| customer-002 | tickets |" in text and "main is now" in text
    curves = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "savefig" in c.source)
    assert outputs[curves].strip() == "6"  # one validation-accuracy point per epoch, read back from MLflow
