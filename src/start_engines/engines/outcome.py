"""What a use case answers, and the small helpers that shape answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from start_engines.errors import ConfigError
    from start_engines.target_group_handler import TargetHealth


@dataclass(frozen=True)
class Outcome:
    """What a use case answers: an HTTP-style status and a JSON body."""

    status_code: int
    body: dict[str, Any]


def combine(results: list[tuple[int, dict[str, Any]]]) -> Outcome:
    """One answer for several engines: 200 if all succeeded, the shared status if all failed
    alike, else 207 (multi-status). Each result carries its own statusCode."""
    codes = [code for code, _ in results]
    failed = sum(1 for code in codes if code >= 400)
    if failed == 0:
        status = 200
    elif failed == len(codes):
        status = codes[0] if len(set(codes)) == 1 else 500
    else:
        status = 207
    return Outcome(
        status,
        {
            "results": [{"statusCode": code, **body} for code, body in results],
            "succeeded": len(codes) - failed,
            "failed": failed,
        },
    )


def not_configured(error: ConfigError, implicit: bool) -> tuple[int, dict[str, Any]]:
    """An engine left out of the deployment: skipped when the request meant 'every engine'."""
    if implicit:
        return 200, {"service": error.service, "status": "not-configured", "reason": error.message}
    return error.status_code, error.to_body()


def state_of(targets: Sequence[TargetHealth], ip: str, port: int) -> str:
    return next((t.state for t in targets if t.ip == ip and t.port == port), "unregistered")


def target_group_name(arn: str) -> str:
    """`auth-tg` from arn:...:targetgroup/auth-tg/0123abcd."""
    return arn.split(":targetgroup/", 1)[-1].split("/", 1)[0]
