"""`make demo`: the seed's event for `auth`, through lambda_handler, on the embedded AWS; then
`pdf` woken by its first request through the emulated ALB, and put back to sleep when idle."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any, TextIO

from start_engines.clock import SystemClock
from start_engines.local.context import LambdaContext
from start_engines.local.emulator import Emulator
from start_engines.progress import ProgressPrinter, show_progress

SEED_EVENT = {
    "version": "0",
    "id": "demo-0001",
    "source": "custom.app",
    "detail-type": "Start ECS Task",
    "detail": {"service": "auth"},
}


def _quiet_json_logs(out: TextIO) -> None:
    """The Lambda logs JSON for CloudWatch; here a person reads, so show progress lines."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("start_engines") or name == "start-engines":
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = False
    show_progress(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--start-seconds", type=float, default=4.0, help="emulated Fargate start")
    parser.add_argument(
        "--health-seconds", type=float, default=10.0, help="ALB registration delay (s)"
    )
    parser.add_argument(
        "--json-logs", action="store_true", help="show the Lambda's JSON logs and EMF metrics"
    )
    args = parser.parse_args(argv)
    return run_demo(args.start_seconds, args.health_seconds, sys.stdout, json_logs=args.json_logs)


def run_demo(
    start_seconds: float, health_seconds: float, out: TextIO, *, json_logs: bool = False
) -> int:
    began = time.monotonic()
    with Emulator(start_seconds=start_seconds, health_seconds=health_seconds) as emu:
        print(f"Embedded AWS: moto server at {emu.endpoint_url}", file=out)
        provisioned = emu.provision(wakeable=("pdf",))
        emu.apply_environ()
        print(f"Provisioned VPC {provisioned.vpc_id}, one ALB with path rules:", file=out)
        for engine, arn in provisioned.target_groups.items():
            print(f"  /api/{engine}/*  ->  {arn.split('/', 1)[1]}", file=out)

        from start_engines import lambda_function

        if not json_logs:
            _quiet_json_logs(out)
            # metrics are EMF JSON lines for CloudWatch to read, not for a person
            os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
        clock = SystemClock()
        print("\nSending the seed's event to lambda_handler:", file=out)
        print("  " + json.dumps(SEED_EVENT), file=out)
        result = lambda_function.lambda_handler(SEED_EVENT, LambdaContext(clock, 120))
        print("\nResult:", file=out)
        print(json.dumps(result, indent=2, default=str), file=out)
        if result["statusCode"] != 200:
            return 1

        body: dict[str, Any] = result["body"]
        elbv2 = emu.clients().elbv2
        group = body["targetGroupArn"].split("/", 1)[1]
        target = f"{body['privateIp']}:{body['port']}"
        print(f"\nThe ALB's health checks of {target} in {group}:", file=out)
        state = ""
        targets: list[Any] = []
        deadline = time.monotonic() + health_seconds + 10
        while state != "healthy" and time.monotonic() < deadline:
            targets = elbv2.describe_target_health(TargetGroupArn=body["targetGroupArn"])[
                "TargetHealthDescriptions"
            ]
            mine = [t for t in targets if t["Target"]["Id"] == body["privateIp"]]
            health = mine[0]["TargetHealth"] if mine else {"State": "missing"}
            if health["State"] != state:  # one line per change, as it happens
                state = health["State"]
                reason = f" ({health['Reason']})" if health.get("Reason") else ""
                print(f"  [{time.monotonic() - began:5.1f}s] {state}{reason}", file=out)
            if state != "healthy":
                time.sleep(0.5)
        print(f"\nTargets in {group} now:", file=out)
        for described in targets:  # the current state, one line per target
            print(
                f"  {described['Target']['Id']}:{described['Target']['Port']}  "
                f"{described['TargetHealth']['State']}",
                file=out,
            )
        if state != "healthy":
            return 1
        print(f"\n[{time.monotonic() - began:5.1f}s] auth is healthy behind /api/auth/*.", file=out)
        woke = wake_story(emu, out, began)
        print(f"\nDone in {time.monotonic() - began:.1f}s.", file=out)
        return 0 if woke else 1


def wake_story(emu: Emulator, out: TextIO, began: float) -> bool:
    """pdf sleeps behind the wake target group: a request wakes it, the engine answers, the
    reaper puts it back to sleep."""
    from start_engines import lambda_function

    def say(text: str) -> None:
        print(f"  [{time.monotonic() - began:5.1f}s] {text}", file=out)

    engines_logger = logging.getLogger("start_engines.engines")
    for handler in list(engines_logger.handlers):  # the polls below tell this story's progress
        if isinstance(handler, ProgressPrinter):
            engines_logger.removeHandler(handler)
    emu.deliver_task_events()  # as the deployed aws.ecs rule would
    with emu.front_door() as door:
        url = f"{door.url}/api/pdf/report"
        print(
            "\nWake on request: pdf sleeps; its rule forwards to the wake target group.", file=out
        )
        print(f"A client asks for {url} (as a browser would, Accept: text/html):", file=out)
        status, headers, body = _get(url, accept="text/html")
        say(
            f"{status} {headers.get('X-Start-Engines-Wake')}: the waiting page, refreshing every "
            f"{headers.get('Refresh')} s"
        )
        last = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, headers, body = _get(url)
            if status == 200:
                say("healthy: pdf's rule now forwards to pdf's own target group")
                say(f"200 from the engine itself: {body.decode()}")
                break
            answer = json.loads(body)
            line = f"{status} {answer['state']}" + (
                f", task {answer['taskStatus']}" if answer.get("taskStatus") else ""
            )
            if answer.get("taskStatus") == "RUNNING":
                line += ": registered, waiting for the ALB's health checks"
            if line != last:
                say(line)
                last = line
            time.sleep(1.0)
        else:
            return False
        os.environ.update(
            PDF_IDLE_MINUTES="0.05", PDF_MIN_UPTIME_MINUTES="0", METRICS_DELAY_MINUTES="0"
        )
        time.sleep(3.5)  # idle for idleMinutes (3 s here): no request reached pdf since
        print(
            "\nNo more requests; the scheduled reaper runs (pdf's idleMinutes is 3 s here, 30 "
            "min by default), and drains pdf's target before it stops the task (the group's "
            "10 s deregistration delay):",
            file=out,
        )
        reap = {"source": "aws.events", "detail-type": "Reap Idle Engines", "detail": {}}
        reaped = lambda_function.lambda_handler(reap, LambdaContext(SystemClock(), 60))
        for result in reaped["body"]["results"]:
            if result["service"] == "pdf":
                say(f"pdf: {result['action']} ({result['reason']})")
        status_event = {"action": "status", "service": "pdf"}
        routing = lambda_function.lambda_handler(status_event, LambdaContext(SystemClock(), 60))
        say(f"pdf's rule: {routing['body']['results'][0].get('routing')}")
        status, headers, _ = _get(url)
        say(f"the next request: {status} {headers.get('X-Start-Engines-Wake')}, waking it again")
        emu.stop_delivering()
        return True


def _get(url: str, accept: str = "*/*") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


if __name__ == "__main__":
    sys.exit(main())
