"""The `start-engines` command: the same engines as the Lambda, for a person or a script.

Exit codes: 0 ok, 1 failure, 2 bad usage only (argparse errors, unknown engine, bad option),
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from start_engines.clock import Deadline, SystemClock
from start_engines.errors import BadEvent, StartEnginesError
from start_engines.progress import GREEN, RED, YELLOW, paint, quiet_library_logs, show_progress

if TYPE_CHECKING:
    from collections.abc import Sequence

    from start_engines.engines import Engines, Outcome

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells expect


def common_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Options taken before or after the command: `--json status` and `status --json`."""
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {}
    parser.add_argument("--json", action="store_true", help="print the JSON answer only", **default)
    parser.add_argument(
        "--endpoint-url", help="AWS endpoint (an emulator); default: boto3's", **default
    )
    parser.add_argument("--region", help="AWS region; default: the standard chain", **default)
    parser.add_argument("--profile", help="AWS profile; default: the standard chain", **default)


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (exit 2), not a screen of usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"start-engines: {message} (see {self.prog} --help)\n")


# The direct-invoke fields the CLI fills, by the option a person typed.
OPTIONS = {
    "payload.count": "--count",
    "payload.force": "--force",
    "payload.taskId": "--task-id",
    "payload.reason": "--reason",
    "payload.service": "ENGINE",
    "payload.services": "ENGINE",
}


def in_options(text: str) -> str:
    """A validation message in the words of the command line."""
    for field, option in OPTIONS.items():
        text = text.replace(field, option)
    return text


def parser() -> argparse.ArgumentParser:
    root = OneLineParser(
        prog="start-engines", description="Start and stop ECS Fargate engines on demand."
    )
    root.add_argument("--version", action="version", version=f"start-engines {version()}")
    common_options(root, suppress=False)
    shared = OneLineParser(add_help=False)
    common_options(shared, suppress=True)
    commands = root.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser
    )

    start = commands.add_parser("start", parents=[shared], help="start engines and register them")
    start.add_argument("services", nargs="+", metavar="ENGINE")
    start.add_argument("--wait-healthy", action="store_true", help="also wait until healthy")
    start.add_argument("--count", type=int, help="make sure N tasks are live")
    start.add_argument("--force", action="store_true", help="start one more task")
    start.add_argument("--no-wait", action="store_true", help="return once RunTask succeeds")
    start.add_argument("--timeout", type=float, default=600.0, help="longest wait, seconds")

    stop = commands.add_parser(
        "stop", parents=[shared], help="deregister and stop engines (all if none named)"
    )
    stop.add_argument("services", nargs="*", metavar="ENGINE")
    stop.add_argument("--task-id")
    stop.add_argument("--include-foreign", action="store_true")
    stop.add_argument("--drain", action="store_true", help="wait for draining before StopTask")
    stop.add_argument("--reason")
    stop.add_argument("--timeout", type=float, default=300.0)

    for name, text in (
        ("status", "tasks, target health and readiness"),
        ("sync", "make target groups match live tasks"),
    ):
        command = commands.add_parser(name, parents=[shared], help=text)
        command.add_argument("services", nargs="*", metavar="ENGINE")

    reap = commands.add_parser(
        "reap", parents=[shared], help="stop idle engines (all if none named)"
    )
    reap.add_argument("services", nargs="*", metavar="ENGINE")
    reap.add_argument(
        "--dry-run", action="store_true", help="report what would stop; change nothing"
    )
    reap.add_argument("--timeout", type=float, default=300.0)

    demo = commands.add_parser(
        "demo",
        help="the deployed stack on an embedded AWS emulator: PutEvents starts auth, a request "
        "wakes pdf, the scheduled reaper stops both",
        description="The deployed stack on an embedded AWS emulator (what `make demo` runs).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    demo.add_argument("--start-seconds", type=float, default=40.0, help="emulated Fargate start")
    demo.add_argument("--health-seconds", type=float, default=10.0, help="ALB registration delay")
    demo.add_argument("--speed", type=float, default=10.0, help="emulated seconds per second")
    demo.add_argument("--idle-speed", type=float, default=180.0, help="the same, while idle")

    config = commands.add_parser("config", parents=[shared], help="configuration")
    config_commands = config.add_subparsers(
        dest="config_command", required=True, metavar="SUBCOMMAND"
    )
    config_commands.add_parser(
        "check", parents=[shared], help="pre-flight check of every engine against the account"
    )
    return root


def requester() -> str:
    """Who runs this command, so a refusal can say "your own earlier start"."""
    import pwd
    import socket

    return f"{pwd.getpwuid(os.getuid()).pw_name}@{socket.gethostname()}"[:128]


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("start-engines")
    except PackageNotFoundError:
        return "unknown"


def payload(args: argparse.Namespace) -> dict[str, Any]:
    """The direct-invoke payload for the command: events.py validates it like any other."""
    body: dict[str, Any] = {"action": args.command}
    services = getattr(args, "services", None)
    if services and len(services) == 1:
        body["service"] = services[0]
    elif services:
        body["services"] = services
    if args.command == "start":
        body.update(waitForHealthy=args.wait_healthy, force=args.force, **{"async": args.no_wait})
        body["requester"] = requester()
        if args.count is not None:
            body["count"] = args.count
    if args.command == "reap":
        body["dryRun"] = args.dry_run
    if args.command == "stop":
        body.update(includeForeign=args.include_foreign, waitForDraining=args.drain)
        if args.task_id:
            body["taskId"] = args.task_id
        if args.reason:
            body["reason"] = args.reason
    return body


def build_engines(args: argparse.Namespace) -> Engines:
    import botocore.session

    from start_engines.aws import Clients
    from start_engines.engines import Engines

    session = botocore.session.Session(profile=args.profile)
    if args.region:
        session.set_config_variable("region", args.region)
    return Engines.build(Clients(session=session, endpoint_url=args.endpoint_url), SystemClock())


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from start_engines.events import parse_event

    command = parse_event(payload(args))
    engines = build_engines(args)
    quiet_library_logs()
    printer = show_progress(err) if not args.json and args.command == "start" else None
    try:
        outcome = engines.dispatch(
            command, Deadline.after(engines.clock, getattr(args, "timeout", 120.0))
        )
    finally:
        if printer is not None:
            printer.finish()
    if args.json:
        print(
            json.dumps(
                {"statusCode": outcome.status_code, "body": outcome.body}, indent=2, default=str
            ),
            file=out,
        )
    else:
        render(args.command, outcome, out, err)
    return exit_code(outcome)


def exit_code(outcome: Outcome) -> int:
    """0 ok, 2 when every failure is the caller's usage (a bad name or value), else 1."""
    results = outcome.body.get("results", [outcome.body])
    failed = [r for r in results if int(r.get("statusCode", outcome.status_code)) >= 400]
    if outcome.status_code < 400 and not failed:
        return EXIT_OK
    if any(r.get("errorType") == "Interrupted" for r in failed):
        return EXIT_INTERRUPTED
    usage = {cls.__name__ for cls in usage_errors()}
    if failed and all(r.get("errorType") in usage for r in failed):
        return EXIT_USAGE
    return EXIT_FAILURE


def usage_errors() -> list[type[BadEvent]]:
    """The errors that mean the command line was wrong, not that something failed."""
    found: list[type[BadEvent]] = [BadEvent]
    for cls in found:
        found.extend(cls.__subclasses__())
    return [cls for cls in found if cls.status_code == 400]


def render(command: str, outcome: Outcome, out: TextIO, err: TextIO) -> None:
    """Successes on stdout; each engine's failure as one line on stderr, naming the engine."""
    results = outcome.body.get("results", [outcome.body])
    if command == "status":
        print_table(status_rows([r for r in results if "error" not in r]), out)
    for r in results:
        name = r.get("service") or "start-engines"
        if "error" in r:
            print(paint(f"start-engines: {name}: {failure(r)}", RED, err), file=err)
        elif command != "status":
            print(f"{paint(name, GREEN, out)}: {summary(command, r)}", file=out)
        if r.get("warning"):
            print(paint(f"start-engines: {name}: warning: {r['warning']}", YELLOW, err), file=err)


def failure(r: dict[str, Any]) -> str:
    """An engine's error, and what its cleanup did, in words."""
    cleaned = (
        f"stopped task {', '.join(r.get('tasksStopped', [])) or 'none'}, "
        f"removed {len(r.get('targetsRemoved', []))} target(s)"
    )
    if r.get("errorType") == "Interrupted":
        return f"interrupted: {cleaned}"
    text = f"{r['errorType']}: {r['error']}"
    if r.get("cleanedUp"):
        text += f" (cleaned up: {cleaned})"
    elif r.get("cleanedUp") is False:
        text += f" (cleanup failed: {r.get('cleanupError')})"
    if r.get("retryAfterSeconds") is not None and "retry in" not in text:
        text += f"; retry in {r['retryAfterSeconds']} s"
    return text


def summary(command: str, r: dict[str, Any]) -> str:
    if command == "start" and "privateIp" in r:
        reused = " (already running)" if r.get("reused") else ""
        tasks = r.get("tasks") or [r]
        where = ", ".join(
            f"task {t['taskId']} at {t['privateIp']}:{r['port']}, health {t['healthStatus']}"
            for t in tasks
        )
        return where + reused
    if command == "start":
        return f"starting, task {r.get('taskId', '?')} is {r.get('lastStatus', '?')}; see `start-engines status {r.get('service')}`"
    if command == "reap":
        return f"{r.get('action')}: {r.get('reason')}"
    if command == "stop":
        return f"{r.get('status')}: {r.get('tasksStopped', 0)} task(s) stopped, {r.get('targetsDeregistered', 0)} target(s) deregistered"
    return f"{r.get('status')}: {len(r.get('registered', []))} registered, {len(r.get('deregistered', []))} stale removed"


def status_rows(results: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("ENGINE", "READY", "TASKS", "TARGETS")]
    for r in results:
        if "tasks" not in r:
            rows.append(
                (
                    str(r.get("service")),
                    "-",
                    str(r.get("status", r.get("errorType", ""))),
                    str(r.get("reason", r.get("error", ""))),
                )
            )
            continue
        tasks = ", ".join(
            f"{t['taskId'][:8]} {t['lastStatus']} {t['privateIp'] or '-'} {t['ageSeconds'] or 0:.0f}s"
            for t in r["tasks"]
        )
        targets = ", ".join(
            f"{t['ip']}:{t['port']} {t['state']}" for g in r["targetGroups"] for t in g["targets"]
        )
        ready = ("yes" if r["ready"] else "no") + (f", {r['routing']}" if r.get("routing") else "")
        rows.append((r["service"], ready, tasks or "-", targets or "-"))
    return rows


def print_table(rows: Sequence[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(),
            file=out,
        )


def config_check(engines: Engines, out: TextIO, *, as_json: bool) -> int:
    """A table of problems, each with its fix; exit 1 if any is an error."""
    problems = engines.check()
    if as_json:
        print(json.dumps([p.__dict__ for p in problems], indent=2), file=out)
    elif not problems:
        print("config check: every engine is ready to start", file=out)
    else:
        rows = [("SEVERITY", "ENGINE", "PROBLEM", "FIX")]
        rows += [(p.severity, p.service, p.problem, p.fix) for p in problems]
        print_table(rows, out)
    return EXIT_FAILURE if any(p.severity == "error" for p in problems) else EXIT_OK


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    args = parser().parse_args(argv)
    try:
        if args.command == "demo":
            from start_engines.local.demo import run_demo

            if min(args.speed, args.idle_speed) <= 0:
                raise BadEvent("demo: --speed and --idle-speed must be positive", field="speed")
            if min(args.start_seconds, args.health_seconds) < 0:
                raise BadEvent("demo: times cannot be negative", field="start-seconds")
            return run_demo(
                args.start_seconds,
                args.health_seconds,
                out,
                speed=args.speed,
                idle_speed=args.idle_speed,
            )
        if args.command == "config":
            return config_check(build_engines(args), out, as_json=args.json)
        return run(args, out, err)
    except BadEvent as exc:
        print(f"start-engines: {in_options(exc.message)}", file=err)
        return EXIT_USAGE
    except StartEnginesError as exc:
        print(f"start-engines: {exc.error_type}: {exc.message}", file=err)
        return EXIT_FAILURE
    except KeyboardInterrupt:  # a second Ctrl-C, during the cleanup of the first: go now
        print(
            "start-engines: interrupted again: tasks this command started may still run; "
            "`start-engines status` shows them, `start-engines stop ENGINE` stops them",
            file=err,
        )
        return EXIT_INTERRUPTED
    except Exception as exc:
        print(f"start-engines: unexpected error: {exc!r}", file=err)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
