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
EXIT = "\nimport os\nos._exit(0)"  # no teardown: see above
OURS = "import start_engines.lambda_function" + EXIT
BOTO3 = "import boto3" + EXIT
# Context for the figure above, not a target: with what a start event's first invocation
# imports besides, before its first AWS call: its command, the handlers Engines.build makes,
# the use case. Creating the clients (botocore's service models) is left out: any handler
# built on boto3 pays that too.
FIRST_START = (
    "import start_engines.lambda_function\n"
    "from start_engines.events import parse_invocation\n"
    "event = {'source': 'custom.app', 'detail-type': 'Start ECS Task', 'detail': {'service': 'auth'}}\n"
    "parse_invocation(event)\n"
    "import start_engines.cloudwatch_handler, start_engines.ecs_handler, start_engines.event_publisher\n"
    "import start_engines.lease, start_engines.listener_handler, start_engines.network_handler\n"
    "import start_engines.target_group_handler, start_engines.engines.start" + EXIT
)


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
    ours, boto3 = medians((OURS, BOTO3), runs)
    return ours, boto3


def medians(codes: tuple[str, ...], runs: int) -> list[float]:
    """Median seconds of whole processes running each of `codes`, interleaved."""
    with tempfile.TemporaryDirectory(prefix="cold-") as tmp:
        root = prepare(Path(tmp))
        check_copy(root)
        env = environ(root)
        samples: list[list[float]] = [[] for _ in codes]
        for _ in range(runs):  # interleaved, so drift hits all alike
            for code, found in zip(codes, samples, strict=True):
                began = time.perf_counter()
                subprocess.run([sys.executable, "-c", code], env=env, cwd=root, check=True)
                found.append(time.perf_counter() - began)
        return [statistics.median(found) for found in samples]


if __name__ == "__main__":
    ours, first_start, boto3 = medians(
        (OURS, FIRST_START, BOTO3), int(sys.argv[1]) if len(sys.argv) > 1 else RUNS
    )
    print(f"{ours:.3f} s = {ours / boto3:.2f}x import boto3 ({boto3:.3f} s)")
    print(f"with a start's first imports: {first_start:.3f} s = {first_start / boto3:.2f}x")
