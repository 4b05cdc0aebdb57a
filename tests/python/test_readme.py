"""The README's pip quick start and its Python example run as written, from an empty folder, with the
installed package: its code blocks are taken from README.md and run in order (only the two ports are
replaced by free ones, so the test does not depend on 5000 and 8080 being free)."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys

import pytest

import mlops

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.mlflow,
    pytest.mark.skipif(not hasattr(mlops, "Pipeline"), reason="built without the pipeline component"),
    pytest.mark.skipif(shutil.which("curl") is None, reason="the quick start asks the server with curl"),
]


def section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else len(text)]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.S | re.M)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_install_block_names_the_distribution_and_never_the_bare_name():
    install = section("Install")
    assert "not on the public package index yet" in install and "make wheel" in install
    commands = " ".join(blocks(install, "sh"))
    assert "mlops_dolt-*.whl" in commands
    assert not re.search(r"pip install\s+[\"']?mlops(\s|$|\[|[\"'])", commands + install)


def test_the_quick_start_and_the_python_example_run_as_written(tmp_path):
    quick = blocks(section("Quick start with pip"), "sh")
    assert len(quick) == 3, "quick start, serve and ask, stop the server"
    [example] = blocks(section("How it fits together"), "python")
    ports = {"5000": str(free_port()), "8080": str(free_port())}

    def local(code: str) -> str:
        return re.sub(r"\b(5000|8080)\b", lambda m: ports[m.group(1)], code)

    start, serve, stop = (local(b) for b in quick)
    script = "\n".join([
        "set -euo pipefail",
        # Whatever fails, nothing is left running.
        "trap 'kill %1 2>/dev/null || true; mlops mlflow-server --stop >/dev/null 2>&1 || true' EXIT",
        start, serve,
        "python - <<'PYTHON_EXAMPLE'", local(example), "PYTHON_EXAMPLE",
        stop,
    ])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_"))}
    env.update(PATH=f"{pathlib.Path(sys.executable).parent}:{env.get('PATH', '')}", HOME=str(tmp_path / "home"))
    (tmp_path / "home").mkdir()  # serve --alias keeps fetched releases under ~/.cache/mlops
    folder = tmp_path / "empty"
    folder.mkdir()
    r = subprocess.run(["bash", "-c", script], cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-6000:]
    out = r.stdout
    assert "8 adapters of 8 stale" in out and "trained, awaiting release" in out
    assert re.search(r"^registry\.example\.com/adapters:[0-9a-f]{32}$", out, re.M), out
    assert re.search(r'\{"predictions": ?\["[a-z]+"\]\}', out), out
    assert not (folder / "mlruns" / "server.pid").exists()  # --stop ended it
