"""Cold start the way Lambda runs it: the package copied next to nothing else (not the editable
install), bytecode compiled as `make sam-build` ships it, whole processes, the import of the
handler's module interleaved with a bare `import boto3`, median of each. Each process ends with
os._exit right after its import: Lambda keeps the process for the invocations, so the
interpreter's teardown (a last garbage collection over the whole heap, module cleanup) is no
part of a cold start, and counting it would credit or blame the import for it."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 21
PACKAGE = Path(__file__).resolve().parent.parent / "src" / "start_engines"
EXIT = "; import os; os._exit(0)"  # no teardown: see above
OURS = "import start_engines.lambda_function" + EXIT
BOTO3 = "import boto3" + EXIT


def prepare(dest: Path) -> Path:
    """A non-editable copy of the package in `dest`, compiled; returns `dest`."""
    shutil.copytree(PACKAGE, dest / "start_engines", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", dest],
        check=True,
    )
    return dest


def environ(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(root)  # first on sys.path, before the editable install's entry
    return env


def check_copy(root: Path) -> None:
    """The copy, not the source tree, is what gets imported."""
    found = subprocess.run(
        [sys.executable, "-c", "import start_engines; print(start_engines.__file__)"],
        env=environ(root),
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not found.startswith(str(root)):
        raise RuntimeError(f"start_engines came from {found}, not the copy in {root}")


def cold_ratio(runs: int = RUNS) -> tuple[float, float]:
    """Median seconds of whole processes: (import of our handler, import boto3)."""
    with tempfile.TemporaryDirectory(prefix="cold-") as tmp:
        root = prepare(Path(tmp))
        check_copy(root)
        env = environ(root)
        ours: list[float] = []
        base: list[float] = []
        for _ in range(runs):  # interleaved, so drift hits both alike
            for code, samples in ((OURS, ours), (BOTO3, base)):
                began = time.perf_counter()
                subprocess.run([sys.executable, "-c", code], env=env, cwd=root, check=True)
                samples.append(time.perf_counter() - began)
        return statistics.median(ours), statistics.median(base)


if __name__ == "__main__":
    ours, boto3 = cold_ratio(int(sys.argv[1]) if len(sys.argv) > 1 else RUNS)
    print(f"{ours:.3f} s = {ours / boto3:.2f}x import boto3 ({boto3:.3f} s)")
