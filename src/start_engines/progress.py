"""What a person sees: the start's progress records as they happen, and colour on a terminal.

Used by the CLI and the demo; the Lambda logs the same records as JSON instead. On a terminal
(a TTY) the task's status is one live line that updates in place and milestones are coloured;
anywhere else (a pipe, a file, CI) it is plain text, one line per record.
"""

from __future__ import annotations

import logging
from typing import TextIO

GREEN, YELLOW, RED, CYAN, DIM = "32", "33", "31", "36", "2"
STEP_COLOURS = {"RunTask": CYAN, "status": YELLOW, "registered": GREEN, "health": GREEN}
CLEAR_LINE = "\r\x1b[2K"


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(callable(isatty) and isatty())


def paint(text: str, colour: str, stream: TextIO) -> str:
    """`text` in an ANSI colour when `stream` is a terminal, else as it is."""
    return f"\x1b[{colour}m{text}\x1b[0m" if is_terminal(stream) else text


class ProgressPrinter(logging.Handler):
    """Shows the start's progress records as they happen: status, elapsed time, IP, health."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(logging.INFO)
        self.stream = stream
        self.live = is_terminal(stream)
        self.open_line = False  # a live status line waits to be replaced

    def emit(self, record: logging.LogRecord) -> None:
        progress = getattr(record, "progress", None)
        if not isinstance(progress, dict):
            return
        step = str(progress.get("step", ""))
        elapsed = paint(f"[{progress.get('elapsed', 0):5.1f}s]", DIM, self.stream)
        text = paint(record.getMessage(), STEP_COLOURS.get(step, "0"), self.stream)
        line = f"  {elapsed} {text}"
        if not self.live:
            self.stream.write(line + "\n")
        elif step == "status":  # the task's status: one line, updated in place
            self.stream.write(CLEAR_LINE + line)
            self.open_line = True
        else:
            self.stream.write((CLEAR_LINE if self.open_line else "") + line + "\n")
            self.open_line = False
        self.stream.flush()

    def finish(self) -> None:
        """End a live status line, so what follows starts on a line of its own."""
        if self.open_line:
            self.stream.write("\n")
            self.stream.flush()
            self.open_line = False


def show_progress(stream: TextIO) -> ProgressPrinter:
    printer = ProgressPrinter(stream)
    engines_logger = logging.getLogger("start_engines.engines")
    engines_logger.addHandler(printer)
    engines_logger.setLevel(logging.INFO)
    return printer


def quiet_library_logs() -> None:
    """A person reads the answer (and the progress lines), not the Lambda's log records: what
    a warning says is in the answer too. A machine reading --json gets JSON only."""
    package = logging.getLogger("start_engines")
    package.handlers.clear()
    package.addHandler(logging.NullHandler())
    package.propagate = False
