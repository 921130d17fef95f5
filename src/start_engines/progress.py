"""Progress lines for a person: the start's progress log records, printed as they happen.

Used by the CLI and the demo; the Lambda logs the same records as JSON instead.
"""

from __future__ import annotations

import logging
from typing import TextIO


class ProgressPrinter(logging.Handler):
    """Shows the start's progress records as they happen: status, elapsed time, IP, health."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(logging.INFO)
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        progress = getattr(record, "progress", None)
        if isinstance(progress, dict):
            self.stream.write(f"  [{progress.get('elapsed', 0):5.1f}s] {record.getMessage()}\n")
            self.stream.flush()


def show_progress(stream: TextIO) -> None:
    engines_logger = logging.getLogger("start_engines.engines")
    engines_logger.addHandler(ProgressPrinter(stream))
    engines_logger.setLevel(logging.INFO)  # its warnings go on up to show_warnings' handler


def quiet_library_logs() -> None:
    """A person reads the answer (and the progress lines), not the Lambda's log records: what
    a warning says is in the answer too. A machine reading --json gets JSON only."""
    package = logging.getLogger("start_engines")
    package.handlers.clear()
    package.addHandler(logging.NullHandler())
    package.propagate = False
