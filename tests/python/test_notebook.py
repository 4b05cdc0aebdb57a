"""The example notebooks run top to bottom against DoltLite and a local MLflow server: the quickstart, and the
accuracy deltas of a release (a matplotlib plot of each candidate's change against production)."""

import pathlib
import re

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


def test_release_deltas_notebook_plots_each_models_accuracy_change(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "examples" / "notebooks" / "release_deltas.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    text = {i: "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in c.get("outputs", []))
            for i, c in enumerate(code)}
    plot = next(i for i, c in enumerate(code) if "savefig" in c.source)
    # One bar per retrained model and data commit; the mislabelled customer's bars are a failed gate.
    lines = [line for line in text[plot].splitlines() if "'s data:" in line]
    assert text[plot].splitlines()[-1].strip() == str(len(lines)) == "4", text[plot]
    flipped = [line for line in lines if line.startswith("customer-005 ")]
    assert len(flipped) == 2 and all(line.endswith(" fail") for line in flipped), lines
    at_baseline = next(line for line in flipped if "baseline's data" in line)
    assert float(at_baseline.split(": ")[1].split(" points")[0]) < -5, at_baseline
    assert all(line.endswith(" pass") for line in lines if line.startswith("customer-002 ")), lines
    png = pathlib.Path(re.search(r"^plot: (.+\.png)$", text[plot], re.M)[1])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    # The release holds that customer back; its deltas name what shipped.
    release = "\n".join(text.values())
    assert re.search(r"^held back: customer-005 v2 \(production keeps v1\): accuracy -\d+\.\d points .*a drop beyond "
                     r"max_drop 5$", release, re.M), release
    assert "promoted: ['customer-002']" in release, release
    assert re.search(r"^customer-002 v1 -> v2 \(pass\): accuracy \d\.\d{3} -> \d\.\d{3} on \d+ rows$", release, re.M), release
