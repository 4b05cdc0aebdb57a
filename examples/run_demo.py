"""The main job (`make demo`): runs every numbered example, Python and C++, and says what each did.

The C++ examples are built as a separate project against the installed CMake package
(build/prefix), exactly as an application would use mlops.
"""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"


def run(cmd, **kw):
    print("$", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def main() -> int:
    print("== Python examples ==")
    for script in sorted((ROOT / "examples" / "python").glob("[0-9][0-9]_*.py")):
        title = script.read_text().splitlines()[0].strip('"')
        print(f"\n-- {script.name}: {title}")
        run([sys.executable, str(script)])

    print("\n== C++ examples (find_package(mlops) against the installed package) ==")
    prefix = BUILD / "prefix"
    run(["cmake", "--install", str(BUILD / "cpp"), "--prefix", str(prefix), "--component", "Development"],
        stdout=subprocess.DEVNULL)
    run(["cmake", "-S", str(ROOT / "examples" / "cpp"), "-B", str(BUILD / "examples"),
         f"-DCMAKE_PREFIX_PATH={prefix}", "-DCMAKE_BUILD_TYPE=Release"], stdout=subprocess.DEVNULL)
    run(["cmake", "--build", str(BUILD / "examples")], stdout=subprocess.DEVNULL)
    for exe in sorted((BUILD / "examples").glob("[0-9][0-9]_*")):
        if exe.is_file() and os.access(exe, os.X_OK):
            print(f"\n-- {exe.name}")
            run([str(exe)])
    print("\ndemo: all examples ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
