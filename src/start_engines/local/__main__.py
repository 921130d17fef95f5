"""`python -m start_engines.local`: run the embedded AWS until interrupted, for the CLI.

Prints the environment a shell needs (`eval "$(python -m start_engines.local --print-env)"`
style is not needed: copy the lines), then serves with a real clock.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from start_engines.local.emulator import Emulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--start-seconds", type=float, default=4.0)
    parser.add_argument("--health-seconds", type=float, default=10.0)
    parser.add_argument("--stop-seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Emulator(
        start_seconds=args.start_seconds,
        health_seconds=args.health_seconds,
        stop_seconds=args.stop_seconds,
    ) as emu:
        provisioned = emu.provision()
        for key, value in {**emu.aws_environ(), **provisioned.environ()}.items():
            sys.stdout.write(f"export {key}={value}\n")
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
