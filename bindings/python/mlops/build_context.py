"""A release's Docker build context that installs only what it ships.

The image installs this project from its own wheel (given, or the one ``make wheel`` left in ``dist/``) and
its runtime dependencies from wheels downloaded here, all copied into the context and pinned by SHA-256;
the Dockerfile installs them with ``pip install --no-index --require-hashes``: nothing is ever installed by
name from an index at image build time.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import tempfile

import mlops

DISTRIBUTION = "mlops-dolt"
_WHEEL_FILE = re.compile(r"(?P<dist>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl")


def wheel_tags(wheel: pathlib.Path) -> dict:
    """Name, version and tags from a wheel's file name; ConfigError when it is not this project's wheel."""
    m = _WHEEL_FILE.fullmatch(wheel.name)
    if not m or m["dist"].lower().replace("_", "-") != DISTRIBUTION:
        raise mlops.ConfigError(f"[mlops.config] {str(wheel)!r} is not a wheel of {DISTRIBUTION} "
                                f"(expected {DISTRIBUTION.replace('-', '_')}-<version>-<tags>.whl)")
    return m.groupdict()


def find_wheel(wheel: str | os.PathLike | None = None, search: str | os.PathLike = "dist") -> pathlib.Path:
    """The wheel to ship: ``wheel`` when given, else ``MLOPS_WHEEL``, else this version's wheel that
    ``make wheel`` left in ``search``."""
    wheel = wheel or os.environ.get("MLOPS_WHEEL")
    if wheel:
        path = pathlib.Path(wheel)
        if not path.is_file():
            raise mlops.ConfigError(f"[mlops.config] the wheel {str(path)!r} (--wheel or MLOPS_WHEEL) does not exist")
        wheel_tags(path)
        return path.resolve()
    pattern = f"{DISTRIBUTION.replace('-', '_')}-{mlops.__version__}-*.whl"
    found = sorted(pathlib.Path(search).glob(pattern), key=lambda p: p.stat().st_mtime)
    if not found:
        raise mlops.ConfigError(
            f"[mlops.config] no wheel to install in the image: pass --wheel PATH or set MLOPS_WHEEL (`make wheel` builds "
            f"{search}/{pattern}; `pip download --no-deps {DISTRIBUTION}=={mlops.__version__}` fetches the published one)")
    return found[-1].resolve()


def _platforms(plat: str) -> list[str]:
    """pip --platform values for a wheel's platform tag (a manylinux_2_N tag accepts older manylinux wheels)."""
    out = []
    for p in plat.split("."):
        out.append(p)
        m = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", p)
        if m:
            out += [f"manylinux_2_{n}_{m[2]}" for n in range(int(m[1]) - 1, 4, -1)]
            out += [f"manylinux2014_{m[2]}", f"manylinux2010_{m[2]}", f"manylinux1_{m[2]}"]
    return list(dict.fromkeys(out))


def download_dependencies(wheel: pathlib.Path, dest: pathlib.Path) -> list[pathlib.Path]:
    """The wheel's runtime dependencies as wheels for its Python and platform, downloaded into ``dest``."""
    tags = wheel_tags(wheel)
    py = tags["py"].split(".")[0]
    m = re.fullmatch(r"cp(\d)(\d+)", py)
    if not m:
        raise mlops.ConfigError(f"[mlops.config] {wheel.name}: cannot tell its Python version from the tag {py!r}")
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(dest),
           "--implementation", "cp", "--python-version", f"{m[1]}.{m[2]}", "--abi", tags["abi"]]
    for p in _platforms(tags["plat"]):
        cmd += ["--platform", p]
    r = subprocess.run(cmd + [str(wheel)], capture_output=True, text=True)
    if r.returncode != 0:
        raise mlops.ConfigError(f"[mlops.config] cannot download the dependencies of {wheel.name} as wheels:\n"
                                + r.stderr.strip()[-2000:])
    return sorted(p for p in dest.glob("*.whl") if p.name != wheel.name)


def write_build_context(pipeline, directory: str | os.PathLike, release: str = "",
                        wheel: str | os.PathLike | None = None, base_image: str = "") -> str:
    """Writes the build context of ``release`` (default: the newest) into ``directory``; returns the image tag."""
    path = find_wheel(wheel)
    with tempfile.TemporaryDirectory(prefix="mlops-wheels-") as tmp:
        deps = download_dependencies(path, pathlib.Path(tmp))
        return pipeline.write_build_context(directory, release, wheel=str(path), wheels=[str(d) for d in deps],
                                            base_image=base_image)
