"""Run the embedded AWS (a moto server with the five engines) until Ctrl-C, for the CLI.

It prints `export` lines on stdout: paste them into another shell, then run `start-engines`
in that shell. Tasks and health checks run on the real clock, and ECS Task State Change
events reach the task-state entry point as a deployed stack's rule would deliver them.

A front door (the ALB's listener on loopback) is up too: the wakeable engines sleep, and a
request to START_ENGINES_FRONT_DOOR/api/pdf/... wakes pdf, from curl or a browser.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading

from start_engines.local.emulator import Emulator
from start_engines.local.provision import ENGINE_SPECS

FRONT_DOOR = "START_ENGINES_FRONT_DOOR"


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
        "--health-seconds",
        type=float,
        default=10.0,
        help="ALB registration delay: to a new target's first health check (10)",
    )
    parser.add_argument(
        "--stop-seconds", type=float, default=2.0, help="a stopping task's grace (2)"
    )
    parser.add_argument(
        "--wakeable",
        type=_engines,
        default=("pdf",),
        metavar="ENGINES",
        help="comma-separated engines that sleep until a request wakes them (pdf; '' for none)",
    )
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Emulator(
        start_seconds=args.start_seconds,
        health_seconds=args.health_seconds,
        stop_seconds=args.stop_seconds,
    ) as emu:
        provisioned = emu.provision(wakeable=args.wakeable)
        # the task-state entry point and the front door's lambda_handler run in this process
        emu.apply_environ()
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # EMF is for CloudWatch
        _logs_to_stderr()
        emu.deliver_task_events()
        with emu.front_door() as door:
            exports = {**emu.aws_environ(), **provisioned.environ(), FRONT_DOOR: door.url}
            for key, value in exports.items():
                sys.stdout.write(f"export {key}={value}\n")
            sys.stdout.flush()
            sys.stderr.write(
                "# the embedded AWS is up: paste the export lines above into another shell, then"
                " run start-engines there. Ctrl-C stops it.\n"
            )
            for engine in args.wakeable:
                sys.stderr.write(
                    f"# {engine} sleeps until a request wakes it: curl ${FRONT_DOOR}/api/{engine}/x"
                    f", or open {door.url}/api/{engine}/x in a browser\n"
                )
            sys.stderr.flush()
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
    return 0


def _engines(value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in names if name not in ENGINE_SPECS]
    if unknown:
        known = ", ".join(ENGINE_SPECS)
        raise argparse.ArgumentTypeError(f"unknown engine(s) {', '.join(unknown)}; one of {known}")
    return names


def _logs_to_stderr() -> None:
    """The functions log JSON to stdout, as Lambda reads it; here stdout is for the exports."""
    from start_engines import lambda_function  # sets up the functions' logging

    for name in (lambda_function.logger.name, "start_engines"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
                handler.setStream(sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
