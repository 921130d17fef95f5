"""Cold start the way Lambda runs it: the package copied next to nothing else (not the editable
install), bytecode compiled as `make sam-build` ships it, whole processes, the import of the
handler's module interleaved with a bare `import boto3`. Each process ends with os._exit right
after its import: Lambda keeps the process for the invocations, so the interpreter's teardown
(a last garbage collection over the whole heap, module cleanup) is no part of a cold start, and
counting it would credit or blame the import for it.

Several batches, each of PAIRS interleaved pairs (in alternating order); a batch's ratio is the
median of its pairs' ratios (the two processes of a pair ran back to back, on the same machine
state), and the figure is the median over the batches, with their range. (So two equal median
times can come with a ratio below 1: the median of ratios is not the ratio of medians.) Both the wall time and the CPU
time (user + system, from wait4) of each process are measured: on a shared machine the wall
time also counts waiting for a core, which a Lambda sandbox does not. Both swing by several
per cent from batch to batch here, so where valgrind is installed the instructions each import
executes are counted too (callgrind; the same count on every run, whatever the load)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PAIRS = 15  # our import and `import boto3`, back to back, in a batch
BATCHES = 5
# the interpreter measured: this one, or (--python) another with boto3 and Powertools installed,
# such as the runtime's own Python version
PYTHON = [sys.executable]
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
        [PYTHON[0], "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", dest],
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
        [*python("import start_engines; print(start_engines.__file__)")],
        env=environ(root),
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not found.startswith(str(root)):
        raise RuntimeError(f"start_engines came from {found}, not the copy in {root}")


@dataclass(frozen=True)
class Ratio:
    """Ours over `import boto3`: the median over batches, and the lowest and highest batch."""

    median: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.median:.3f}x (batches {self.low:.2f}-{self.high:.2f}x)"

    @classmethod
    def of(cls, batches: list[float]) -> Ratio:
        return cls(statistics.median(batches), min(batches), max(batches))


@dataclass(frozen=True)
class Cold:
    wall: Ratio
    cpu: Ratio
    seconds: tuple[float, float]  # median wall seconds of ours and of import boto3

    @property
    def met(self) -> bool:
        return self.wall.median <= 1.0 and self.cpu.median <= 1.0


def cold_ratio(pairs: int = PAIRS, batches: int = BATCHES) -> Cold:
    """Our handler's import against `import boto3`, by wall and by CPU time."""
    return compare((OURS, BOTO3), pairs, batches)[0]


def compare(codes: tuple[str, ...], pairs: int, batches: int) -> list[Cold]:
    """Each of codes[:-1] against the last one (`import boto3`): `batches` of `pairs` rounds,
    each round running every code once, in the opposite order every other round."""
    wall: list[list[float]] = [[] for _ in codes[:-1]]
    cpu: list[list[float]] = [[] for _ in codes[:-1]]
    seconds: list[list[float]] = [[] for _ in codes]
    with tempfile.TemporaryDirectory(prefix="cold-") as tmp:
        root = prepare(Path(tmp))
        check_copy(root)
        env = environ(root)
        for _ in range(batches):
            ratios: list[list[tuple[float, float]]] = [[] for _ in codes[:-1]]
            for turn in range(pairs):  # interleaved, so drift hits all alike
                order = range(len(codes)) if turn % 2 == 0 else range(len(codes) - 1, -1, -1)
                measured = {i: run(codes[i], root, env) for i in order}
                samples = [measured[i] for i in range(len(codes))]
                for i, found in enumerate(samples):
                    seconds[i].append(found[0])
                base = samples[-1]
                for i, found in enumerate(samples[:-1]):
                    ratios[i].append((found[0] / base[0], found[1] / base[1]))
            for i, found_pairs in enumerate(ratios):
                wall[i].append(statistics.median(w for w, _ in found_pairs))
                cpu[i].append(statistics.median(c for _, c in found_pairs))
    base_seconds = statistics.median(seconds[-1])
    return [
        Cold(Ratio.of(wall[i]), Ratio.of(cpu[i]), (statistics.median(seconds[i]), base_seconds))
        for i in range(len(codes) - 1)
    ]


def run(code: str, root: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one whole process running `code`."""
    began = time.perf_counter()
    process = subprocess.Popen(python(code), env=env, cwd=root)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - began
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{code!r} exited with {process.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def python(code: str) -> list[str]:
    return [PYTHON[0], "-c", code]


def instructions(codes: tuple[str, ...] = (OURS, BOTO3)) -> list[float] | None:
    """Instructions each of `codes` executes, by valgrind's callgrind (about 10 s each), or None
    without valgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    counts = []
    with tempfile.TemporaryDirectory(prefix="cold-") as tmp:
        root = prepare(Path(tmp))
        env = {**environ(root), "PYTHONHASHSEED": "0"}
        for code in codes:
            found = subprocess.run(
                [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", *python(code)],
                env=env,
                cwd=root,
                capture_output=True,
                text=True,
                check=True,
            ).stderr
            collected = re.search(r"Collected : (\d+)", found)
            if collected is None:
                raise RuntimeError(f"callgrind printed no count for {code!r}: {found[-500:]}")
            counts.append(float(collected.group(1)))
    return counts


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the cold start beside import boto3")
    parser.add_argument("--pairs", type=int, default=PAIRS, help="rounds in each of the batches")
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="the interpreter to measure; it needs boto3 and aws-lambda-powertools",
    )
    args = parser.parse_args()
    PYTHON[0] = args.python
    found = subprocess.run(
        python("import sys, boto3, aws_lambda_powertools; print(sys.version.split()[0])"),
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        sys.exit(f"{args.python} cannot import boto3 and aws_lambda_powertools: install them")
    print(f"Python {found.stdout.strip()} ({args.python}), {BATCHES} batches of {args.pairs}")
    ours, first_start = compare((OURS, FIRST_START, BOTO3), args.pairs, BATCHES)
    print(
        f"import: {ours.seconds[0]:.3f} s, import boto3: {ours.seconds[1]:.3f} s; "
        f"wall {ours.wall}, cpu {ours.cpu}"
    )
    print(f"with a start's first imports: wall {first_start.wall}, cpu {first_start.cpu}")
    counted = instructions((OURS, FIRST_START, BOTO3))
    if counted is None:
        print("instructions: valgrind is not installed (apt-get install valgrind)")
    else:
        print(
            f"instructions: {counted[0] / counted[2]:.3f}x import boto3; "
            f"with a start's first imports {counted[1] / counted[2]:.3f}x"
        )
