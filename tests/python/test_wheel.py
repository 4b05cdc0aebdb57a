"""The wheel `make wheel` builds works on its own: installed alone into a fresh virtual environment (no
system site packages, nothing of this checkout), it imports, its extension links only libraries the wheel
carries plus the system's C and C++ runtimes, it trains on the CPU, reads a DoltLite file and talks to an
MLflow server over HTTPS; in the same process Python's own `ssl` module still works.

The wheel is built from the same build folder as `make install` (build/py), so this costs packaging, not a
compile.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap
import zipfile

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from mlflow_server import FaultProxy, self_signed_cert, shared_server  # noqa: E402

pytestmark = pytest.mark.slow

DIST = "mlops_dolt"
# Libraries the wheel takes from the system: glibc's, the compiler's runtime, and zlib (which the manylinux
# policy counts as part of every system: auditwheel never bundles it, and Python itself links it).
SYSTEM_LIBS = {"linux-vdso.so.1", "ld-linux-x86-64.so.2", "libc.so.6", "libm.so.6", "libdl.so.2",
               "libpthread.so.0", "librt.so.1", "libresolv.so.2", "libstdc++.so.6", "libgcc_s.so.1", "libz.so.1"}


@pytest.fixture(scope="session")
def venv(wheel, tmp_path_factory) -> pathlib.Path:
    """A fresh venv with the wheel (and the DoltLite extra) installed, and nothing else of this project."""
    root = tmp_path_factory.mktemp("wheel-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    r = subprocess.run([str(root / "bin" / "python"), "-m", "pip", "install", "-q", f"{wheel}[dolt]"],
                       capture_output=True, text=True, cwd=root.parent)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return root


def in_venv(venv: pathlib.Path, code: str, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MLOPS_", "DOLTLITE_", "MLFLOW_"))}
    return subprocess.run([str(venv / "bin" / "python"), "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env={**clean, **env}, cwd=venv.parent, timeout=600)


def test_the_wheel_carries_its_libraries_and_leaves_cuda_outside(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert any(re.fullmatch(r"mlops/_core\.cpython-.*\.so", n) for n in names), names
    bundled = [n.split("/")[-1] for n in names if n.startswith(f"{DIST}.libs/")]
    # libcurl (MLflow), libmariadb (Dolt sql-server), OpenBLAS (CPU trainer) and OpenSSL come with the wheel.
    for lib in ("libcurl", "libmariadb", "libopenblas", "libcrypto"):
        assert any(b.startswith(lib) for b in bundled), f"{lib} is not in the wheel: {bundled}"
    assert not [b for b in bundled if re.match(r"lib(cuda|cudart|cublas|cublasLt)[.-]", b)], bundled
    assert "mlops_dolt" in zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))).decode().lower().replace("-", "_")
    print(f"\n{wheel.name}: {wheel.stat().st_size / 2**20:.1f} MiB")


def test_the_extension_resolves_only_to_the_wheel_and_the_system_runtime(venv):
    site = pathlib.Path(os.path.realpath(next((venv / "lib").glob("python3*/site-packages"))))
    ext = next((site / "mlops").glob("_core.cpython-*.so"))
    out = subprocess.run(["ldd", str(ext)], capture_output=True, text=True, check=True).stdout
    libs = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+)(?: => (\S+))?", line)
        if m:
            libs[m.group(1)] = os.path.realpath(m.group(2)) if m.group(2) else m.group(1)
    assert "not found" not in out, out
    for name, path in libs.items():
        base = pathlib.Path(name).name
        inside = path.startswith(str(site / f"{DIST}.libs") + "/")
        assert inside or base in SYSTEM_LIBS, f"{name} resolves to {path}, outside the wheel:\n{out}"
    assert any(p.startswith(str(site / f"{DIST}.libs")) for p in libs.values()), out


def test_the_cuda_module_is_looked_for_next_to_the_installed_extension(wheel, venv):
    """CUDA stays outside the wheel: where the build has a CUDA backend its module sits next to the extension
    (where the loader looks) and finds a GPU only where a driver exists; the CPU works either way."""
    names = zipfile.ZipFile(wheel).namelist()
    r = in_venv(venv, """
        import mlops
        print(mlops.CudaTrainer(device="auto").device_reason)
    """)
    assert r.returncode == 0, r.stderr
    reason = r.stdout.strip().splitlines()[-1]
    if "mlops/libmlops_cuda.so" not in names:
        assert "MLOPS_WITH_CUDA=OFF" in reason, reason
    else:
        assert "was not found" not in reason, reason
        module = next((venv / "lib").glob("python3*/site-packages")) / "mlops" / "libmlops_cuda.so"
        if "cannot load the CUDA module" in reason:
            assert str(module) in reason, reason
        else:  # it loaded: a GPU was used, or it says why none is usable (no driver, no device)
            assert (reason.startswith("a usable GPU was found (CUDA module ") or "CUDA device" in reason
                    or "no NVIDIA driver" in reason), reason


@pytest.fixture(scope="session")
def https_mlflow(tmp_path_factory):
    server = shared_server(tmp_path_factory.mktemp("mlflow-server"))
    certs = tmp_path_factory.mktemp("tls")
    cert, key = self_signed_cert(certs)
    with FaultProxy(server.url, certfile=cert, keyfile=key) as proxy:
        yield proxy.url, cert


def test_fresh_venv_trains_reads_doltlite_tracks_and_python_ssl_still_works(venv, https_mlflow, tmp_path):
    url, cert = https_mlflow
    r = in_venv(venv, f"""
        import json, pathlib, ssl, sys, urllib.request
        import numpy as np
        import mlops
        from mlops import demo

        assert pathlib.Path(mlops.__file__).is_relative_to({str(venv)!r}), mlops.__file__
        src = mlops.DoltSource("doltlite:{tmp_path / 'data.db'}", create=True)
        demo.init_demo(src, customers=2, rows_per_customer=60, seed=1, epochs=4)
        ds = src.dataset("tickets", label="intent", text="body", where="customer = ?", params=("customer-001",))
        trainer = mlops.CudaTrainer(device="cpu", seed=0)
        [trained] = trainer.fit([mlops.AdapterSpec(name="wheel-check", dataset=ds, epochs=4, learning_rate=0.05)])
        accuracy = float(np.mean(trained.adapter.predict_indices(ds.X) == ds.y))

        tracker = mlops.MlflowTracker({url!r}, server_cert_path={cert!r})
        with tracker.start_run("wheel-check") as run:
            run.log_dataset(ds)
            run.log_metrics({{"accuracy": accuracy}})
            run.log_adapter(trained)
        version = tracker.register("wheel-check", run, artifact_path="model")

        ctx = ssl.create_default_context(cafile={cert!r})
        with urllib.request.urlopen({url!r} + "/health", context=ctx, timeout=30) as resp:
            health = (resp.status, resp.read().decode())
        print(json.dumps({{"rows": int(ds.X.shape[0]), "commit": ds.lineage["commit"], "accuracy": accuracy,
                          "version": version.version, "ssl": ssl.OPENSSL_VERSION, "health": health}}))
    """)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["rows"] == 60 and out["commit"]
    assert out["accuracy"] > 0.5, out
    assert out["version"] >= 1
    assert out["health"] == [200, "OK"], out
