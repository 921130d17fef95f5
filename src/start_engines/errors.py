"""One error hierarchy. Each error knows its HTTP-style status code and its public name."""

from __future__ import annotations

from typing import Any


class StartEnginesError(Exception):
    """Base of every error start-engines raises on purpose."""

    status_code = 500

    def __init__(
        self,
        message: str,
        *,
        service: str | None = None,
        field: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.service = service
        self.field = field
        self.details: dict[str, Any] = dict(details or {})

    @property
    def error_type(self) -> str:
        return type(self).__name__

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "errorType": self.error_type}
        if self.service is not None:
            body["service"] = self.service
        if self.field is not None:
            body["field"] = self.field
        body.update(self.details)
        return body


# 4xx: the caller's input is wrong; nothing was started or stopped.
class BadEvent(StartEnginesError):
    status_code = 400


class UnknownEngine(BadEvent):
    pass


class OverrideNotAllowed(BadEvent):
    pass


class ForeignNotAllowed(BadEvent):
    """includeForeign for an engine whose configuration does not allow it."""


class RouteNotFound(BadEvent):
    status_code = 404


class MethodNotAllowed(BadEvent):
    status_code = 405


class RequestTooLarge(BadEvent):
    """An HTTP request over ALB's limits for a Lambda target (body, path or a header)."""

    status_code = 413


class NoSuchTask(StartEnginesError):
    """The request names a task that is not a live task of the engine."""

    status_code = 404


# 5xx: configuration of the deployment, or AWS, failed us.
class ConfigError(StartEnginesError):
    status_code = 500


class TargetNotInUse(ConfigError):
    """The target stays `unused` (Target.NotInUse): its load balancer does not serve the
    task's Availability Zone, so it would never get traffic."""


class AwsError(StartEnginesError):
    """AWS refused or failed a call."""


class RunTaskFailed(AwsError):
    pass


class RunTaskConflict(AwsError):
    """RunTask saw this clientToken before with other parameters: the event was handled."""


class TaskStopped(AwsError):
    pass


class TaskNotFound(AwsError):
    pass


class TargetGroupNotFound(AwsError):
    pass


class RegistrationFailed(AwsError):
    pass


class StartFailedElsewhere(StartEnginesError):
    """A start of this engine failed moments ago: starts are held off for the cooldown."""

    status_code = 503


class StoppedDuringStart(StartEnginesError):
    """A stop or reap claimed the engine's task while this start was under way. Not a start
    failure: no `Engine Start Failed` event and no cooldown; start again to get a fresh task."""

    status_code = 409


class EngineBusy(StartEnginesError):
    """A stop or reap holds the engine; an asynchronous start would have started nothing."""

    status_code = 503


class Interrupted(StartEnginesError):
    """The person running the command pressed Ctrl-C; what the start ran is cleaned up."""

    status_code = 500


class StartTimeout(StartEnginesError):
    status_code = 504


class InternalError(StartEnginesError):
    """A bug: anything not raised on purpose is reported under this name."""


class EnginesFailed(StartEnginesError):
    """Some engines of a several-engine request failed; `results` has each one's answer."""


def error_from_body(status_code: int, body: dict[str, Any]) -> StartEnginesError:
    """The typed error for an answer: its own class by `errorType`, else EnginesFailed."""
    results = body.get("results")
    if isinstance(results, list) and len(results) == 1:
        return error_from_body(status_code, results[0])
    classes = {cls.__name__: cls for cls in _subclasses(StartEnginesError)}
    error_class = classes.get(str(body.get("errorType")), EnginesFailed)
    error: StartEnginesError
    if error_class is EnginesFailed:
        failed = [r for r in body.get("results", []) if r.get("statusCode", 200) >= 400]
        summary = "; ".join(
            f"{r.get('service')}: {r.get('errorType')}: {r.get('error')}" for r in failed
        )
        error = EnginesFailed(f"{len(failed)} engine(s) failed: {summary}", details=body)
    else:
        details = {
            k: v for k, v in body.items() if k not in ("error", "errorType", "service", "field")
        }
        error = error_class(
            str(body.get("error", "")),
            service=body.get("service"),
            field=body.get("field"),
            details=details,
        )
    error.status_code = status_code
    return error


def error_types() -> frozenset[str]:
    """Every errorType start-engines can answer with."""
    return frozenset(cls.__name__ for cls in _subclasses(StartEnginesError))


def _subclasses(cls: type[StartEnginesError]) -> list[type[StartEnginesError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_subclasses(sub))
    return found
