"""`python -m start_engines.local` as a subprocess: its own emulator on the real clock."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]
FRONT_DOOR = "export START_ENGINES_FRONT_DOOR="
# what the subprocess keeps of ours: never the suite's AWS_* or engine settings
KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH")
UP_SECONDS = 30.0


class LocalAws:
    """The running process; `url` waits for its front door (other set-up can go on meanwhile)."""

    def __init__(self, process: subprocess.Popen[bytes], out: Path, err: Path) -> None:
        self.process, self.out, self.err = process, out, err
        self._url = ""

    @property
    def url(self) -> str:
        if not self._url:
            self._url = _wait_for_door(self.process, self.out, self.err)
        return self._url


@contextlib.contextmanager
def local_aws(tmp_path: Path, *args: str) -> Iterator[LocalAws]:
    """Run it with `args`; SIGTERM (then kill) it afterwards."""
    env = {key: os.environ[key] for key in KEPT_ENV if key in os.environ}
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "start_engines.local", *args],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=stdout,  # a file, not a pipe: the function's logs never block it
            stderr=stderr,
        )
    try:
        yield LocalAws(process, out, err)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_door(process: subprocess.Popen[bytes], out: Path, err: Path) -> str:
    deadline = time.monotonic() + UP_SECONDS
    while time.monotonic() < deadline:
        for line in out.read_text(errors="replace").splitlines():
            if line.startswith(FRONT_DOOR):
                return line.removeprefix(FRONT_DOOR).strip()
        if process.poll() is not None:
            break
        time.sleep(0.1)
    pytest.fail(f"no front door from python -m start_engines.local:\n{err.read_text()[-2000:]}")
