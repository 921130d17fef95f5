"""Run the embedded AWS (a moto server with the five engines) until Ctrl-C, for the CLI.

It prints `export` lines on stdout: paste them into another shell, then run `start-engines`
in that shell. Tasks and health checks run on the real clock, and ECS Task State Change
events reach the task-state entry point as a deployed stack's rule would deliver them.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from start_engines.local.emulator import Emulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m start_engines.local",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--start-seconds", type=float, default=4.0, help="a task's time to RUNNING (4)"
    )
    parser.add_argument(
        "--health-seconds", type=float, default=10.0, help="a new target's time to healthy (10)"
    )
    parser.add_argument(
        "--stop-seconds", type=float, default=2.0, help="a stopping task's grace (2)"
    )
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Emulator(
        start_seconds=args.start_seconds,
        health_seconds=args.health_seconds,
        stop_seconds=args.stop_seconds,
    ) as emu:
        provisioned = emu.provision()
        emu.apply_environ()  # the task-state entry point runs in this process
        emu.deliver_task_events()
        for key, value in {**emu.aws_environ(), **provisioned.environ()}.items():
            sys.stdout.write(f"export {key}={value}\n")
        sys.stdout.flush()
        sys.stderr.write(
            "# the embedded AWS is up: paste the export lines above into another shell, then run"
            " start-engines there. Ctrl-C stops it.\n"
        )
        sys.stderr.flush()
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
