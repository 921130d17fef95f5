"""`start-engines config check`: a pre-flight check of every engine's configuration."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from start_engines.config import engine_names
from start_engines.errors import StartEnginesError

if TYPE_CHECKING:
    from typing import TextIO

    from start_engines.engines import Engines


@dataclass(frozen=True)
class Problem:
    service: str
    severity: str  # error or warning
    problem: str
    fix: str


def problems(engines: Engines) -> list[Problem]:
    found: list[Problem] = []
    for name in engine_names(engines.environ):
        try:
            engines.engine(name)
        except StartEnginesError as exc:
            found.append(
                Problem(
                    name,
                    "error",
                    exc.message,
                    f"set {exc.field}" if exc.field else "fix the configuration",
                )
            )
    return found


def check(engines: Engines, out: TextIO, *, as_json: bool = False) -> int:
    found = problems(engines)
    if as_json:
        print(json.dumps([p.__dict__ for p in found], indent=2), file=out)
    elif not found:
        print("config check: no problems found", file=out)
    else:
        for p in found:
            print(
                f"{p.severity.upper():8} {p.service:8} {p.problem}\n{'':17} fix: {p.fix}", file=out
            )
    return 1 if any(p.severity == "error" for p in found) else 0
