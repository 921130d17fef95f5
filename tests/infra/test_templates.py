"""Both templates: lint-clean, security-scan clean, least privilege, deployable on the emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from start_engines.clock import SystemClock
from start_engines.config import engine_names, get_service_config
from start_engines.engines import Engines
from start_engines.events import ReapRequest, StartRequest, parse_invocation
from start_engines.local import Emulator
from start_engines.rules import forward_weights
from tests.infra.stacks import (
    ALB_TEMPLATE,
    ROOT,
    TEMPLATE,
    deploy,
    load,
    resources,
    role_policies,
    translated_sam,
)

ENGINES = ("Auth", "Pdf", "Fa", "Users", "Batch")
MODIFY_RULE = "elasticloadbalancing:ModifyRule"


@pytest.mark.parametrize("template", [TEMPLATE, ALB_TEMPLATE], ids=["sam", "alb"])
def test_cfn_lint_reports_no_errors(template: Path) -> None:
    lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run([str(lint), str(template)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def scan(checkov: str, scratch: str) -> subprocess.CompletedProcess[str]:
    """checkov on both templates; its caches (the update check's, the HCL grammar's) go to
    `scratch`, and it does not call home."""
    return subprocess.run(
        [
            checkov,
            "-f",
            str(TEMPLATE),
            "-f",
            str(ALB_TEMPLATE),
            "--framework",
            "cloudformation",
            "--skip-download",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={
            **os.environ,
            "BC_SKIP_MAPPING": "TRUE",
            "LOG_LEVEL": "ERROR",
            "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",
            "XDG_CACHE_HOME": scratch,
            "TMPDIR": scratch,
        },
    )


def test_security_scan_finds_nothing() -> None:
    checkov = os.environ.get("CHECKOV") or str(ROOT / ".venv-checkov" / "bin" / "checkov")
    if not Path(checkov).exists():
        pytest.fail("checkov is not installed: run the suite with `make test`, which installs it")
    with tempfile.TemporaryDirectory() as scratch:  # removed with what checkov left in it
        result = scan(checkov, scratch)
    parsed = json.loads(result.stdout)
    reports = parsed if isinstance(parsed, list) else [parsed]
    failed = [c for r in reports for c in r["results"]["failed_checks"]]
    assert [f"{c['check_id']} {c['resource']}" for c in failed] == []
    skipped = [c for r in reports for c in r["results"]["skipped_checks"]]
    assert skipped, "the suppressions are expected to be visible"
    assert all(c["check_result"].get("suppress_comment") for c in skipped), (
        "every suppression is justified"
    )
    assert sum(r["summary"]["passed"] for r in reports) >= 30


# --- least privilege -------------------------------------------------------------------


def statements(role: str) -> list[dict[str, Any]]:
    properties = load(TEMPLATE)["Resources"][role]["Properties"]
    return [s for policy in properties["Policies"] for s in policy["PolicyDocument"]["Statement"]]


def actions(statement: dict[str, Any]) -> list[str]:
    value = statement["Action"]
    return [value] if isinstance(value, str) else list(value)


@pytest.mark.parametrize("role", ["StartEnginesRole", "TaskStateRole"])
def test_no_wildcard_action_anywhere(role: str) -> None:
    for statement in statements(role):
        for action in actions(statement):
            assert "*" not in action, f"{role}: {action}"


def test_each_permission_is_scoped() -> None:
    by_action = {action: s for s in statements("StartEnginesRole") for action in actions(s)}
    run_task = by_action["ecs:RunTask"]
    assert [r["Fn::Sub"].rsplit("/", 1)[1] for r in run_task["Resource"]] == [
        f"${{{engine}TaskDefinition}}:*" for engine in ENGINES
    ]
    assert len(run_task["Condition"]["ArnEquals"]["ecs:cluster"]) == 5
    for action in ("ecs:StopTask", "ecs:DescribeTasks", "ecs:ListTasks"):
        assert len(by_action[action]["Condition"]["ArnEquals"]["ecs:cluster"]) == 5
    assert by_action["ecs:ListTasks"]["Resource"] == "*"  # see LINT_IGNORES
    register = sid("StartEnginesRole", "RegisterOnlyInTheEnginesTargetGroups")
    assert actions(register) == [
        "elasticloadbalancing:RegisterTargets",
        "elasticloadbalancing:DeregisterTargets",
    ]
    assert "Fn::Split" in register["Resource"]  # the engines' target groups, not "*"
    itself = sid("StartEnginesRole", "RegisterTheFunctionInTheWakeTargetGroup")
    assert actions(itself) == actions(register)
    assert itself["Resource"]["Fn::If"][:2] == ["WithWake", {"Ref": "WakeTargetGroupArn"}]
    assert itself["Resource"]["Fn::If"][2]["Fn::Sub"].endswith(":targetgroup/not-deployed/none")
    tagging = next(
        s for s in statements("StartEnginesRole") if s.get("Sid") == "TagTasksInTheEnginesClusters"
    )
    assert actions(tagging) == ["ecs:TagResource", "ecs:UntagResource"]
    assert [r["Fn::Sub"].rsplit(":", 1)[1] for r in tagging["Resource"]] == [
        f"task/${{{engine}Cluster}}/*" for engine in ENGINES
    ]
    pass_role = by_action["iam:PassRole"]
    assert pass_role["Resource"] == {"Ref": "TaskRoleArns"}
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }
    assert by_action["events:PutEvents"]["Resource"]["Fn::Sub"].endswith(
        "event-bus/${EventBusName}"
    )
    assert by_action["dynamodb:PutItem"]["Resource"] == {"Fn::GetAtt": ["LeaseTable", "Arn"]}
    assert by_action["dynamodb:BatchGetItem"]["Resource"] == {"Fn::GetAtt": ["LeaseTable", "Arn"]}
    wildcard = {
        a
        for s in statements("StartEnginesRole")
        if s["Resource"] == "*" and "Condition" not in s
        for a in actions(s)
    }
    assert wildcard == {
        "ecs:DescribeTaskDefinition",
        "elasticloadbalancing:DescribeTargetHealth",
        "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:DescribeRules",
        "ec2:DescribeNetworkInterfaces",
        "cloudwatch:GetMetricData",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
    }  # the read-only actions AWS offers no resource-level scope for


@pytest.mark.parametrize("role", ["StartEnginesRole", "TaskStateRole"])
def test_tasks_are_named_by_their_cluster(role: str) -> None:
    """StopTask and DescribeTasks on the engines' clusters' task ARNs (task/<cluster>/*), not *."""
    by_action = {action: s for s in statements(role) for action in actions(s)}
    named = ("ecs:StopTask", "ecs:DescribeTasks") if role == "StartEnginesRole" else ()
    for action in (*named, "ecs:DescribeTasks"):
        assert [r["Fn::Sub"].rsplit(":", 1)[1] for r in by_action[action]["Resource"]] == [
            f"task/${{{engine}Cluster}}/*" for engine in ENGINES
        ]


def sid(role: str, name: str) -> dict[str, Any]:
    (statement,) = [s for s in statements(role) if s.get("Sid") == name]
    return statement


@pytest.mark.parametrize("role", ["StartEnginesRole", "TaskStateRole"])
def test_modify_rule_is_scoped_to_the_engines_rules(role: str) -> None:
    """ModifyRule only on the five <Engine>ListenerRuleArn (a never-matching placeholder when
    unset), never "*"; and in no other statement."""
    granting = [s for s in statements(role) if "elasticloadbalancing:ModifyRule" in actions(s)]
    assert [s["Sid"] for s in granting] == ["SwitchOnlyTheEnginesListenerRules"]
    (statement,) = granting
    assert actions(statement) == ["elasticloadbalancing:ModifyRule"]
    assert "Condition" not in statement
    resources_ = statement["Resource"]
    assert isinstance(resources_, list) and len(resources_) == len(ENGINES)
    for engine, resource in zip(ENGINES, resources_, strict=True):
        condition, when_set, placeholder = resource["Fn::If"]
        assert (condition, when_set) == (f"{engine}Wakes", {"Ref": f"{engine}ListenerRuleArn"})
        assert ":listener-rule/app/not-deployed/" in placeholder["Fn::Sub"]
    reads = {a for s in statements(role) if s["Resource"] == "*" for a in actions(s)}
    assert "elasticloadbalancing:DescribeRules" in reads  # no resource-level scope for it
    assert "elasticloadbalancing:DescribeTargetHealth" in reads


def test_trust_and_load_settings() -> None:
    template = load(TEMPLATE)
    parameters, resources_ = template["Parameters"], template["Resources"]
    for engine in ENGINES:  # the role's task-definition/<family>:* needs a family
        pattern = parameters[f"{engine}TaskDefinition"]["AllowedPattern"]
        assert pattern == "^[A-Za-z0-9_-]{1,255}$"
    for function in ("StartEnginesFunction", "TaskStateFunction"):
        reserved = resources_[function]["Properties"]["ReservedConcurrentExecutions"]
        assert reserved == {
            "Fn::If": ["Reserved", {"Ref": "ReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
        }
    assert parameters["ReservedConcurrency"]["Default"] == 20
    policy = resources_["EngineBusSenders"]
    assert policy["Condition"] == "OwnBus"
    assert policy["Properties"]["Statement"]["Principal"] == {"AWS": {"Ref": "EventBusSenders"}}
    assert policy["Properties"]["Statement"]["Action"] == "events:PutEvents"


def test_alarms_read_the_metrics_the_code_writes() -> None:
    from start_engines import telemetry

    alarms = {
        name: r["Properties"]
        for name, r in load(TEMPLATE)["Resources"].items()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    assert set(alarms) == {
        "StartEnginesErrorsAlarm",
        "TaskStateErrorsAlarm",
        "ThrottlesAlarm",
        "DeadLettersAlarm",
        "FailedStartsAlarm",
    }
    failed = alarms["FailedStartsAlarm"]
    assert (failed["Namespace"], failed["MetricName"]) == (telemetry.NAMESPACE, "FailedStarts")
    assert failed["Dimensions"] == [{"Name": "service", "Value": telemetry.SERVICE}]
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == {
            "Fn::If": ["WithAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
        }


def test_task_state_role_cannot_start_or_stop() -> None:
    granted = {a for s in statements("TaskStateRole") for a in actions(s)}
    assert not granted & {"ecs:RunTask", "ecs:StopTask", "iam:PassRole"}
    writes = {a for a in granted if a.startswith("dynamodb:")}
    # it may only end a handed-off start's claim, or turn a failed one into the cooldown, and
    # record task states (task#<arn> items only)
    assert writes == {"dynamodb:DeleteItem", "dynamodb:UpdateItem", "dynamodb:PutItem"}
    put = [s for s in statements("TaskStateRole") if "dynamodb:PutItem" in actions(s)]
    assert [actions(s) for s in put] == [["dynamodb:PutItem"]]
    assert put[0]["Resource"] == {"Fn::GetAtt": ["LeaseTable", "Arn"]}
    assert put[0]["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["task#*"]}}


# --- deployed on the emulator ----------------------------------------------------------


def outputs(stack: dict[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


@dataclass(frozen=True)
class Deployed:
    alb: dict[str, Any]
    sam: dict[str, Any]
    sam_template: dict[str, Any]
    certificate: str


@pytest.fixture(scope="module")
def deployed(emulator: Emulator) -> Iterator[Deployed]:
    """infra/alb.yaml, then template.yaml fed by its outputs, on the emulator's CloudFormation.
    Afterwards the emulator is reset: the stacks' rules would otherwise stay on its default bus."""
    assert emulator.provisioned is not None
    provisioned = emulator.provisioned
    certificate = (
        emulator.clients()
        ._client("acm")
        .request_certificate(DomainName="engines.example.com")["CertificateArn"]
    )
    alb = deploy(
        emulator,
        "engines-alb",
        load(ALB_TEMPLATE),
        {
            "VpcId": provisioned.vpc_id,
            "PublicSubnets": ",".join(provisioned.subnets),
            "CertificateArn": certificate,
            "DeletionProtection": "false",
            "WakeableEngines": "pdf",
        },
    )
    alb_outputs = outputs(alb)
    body = translated_sam(emulator)
    # moto's CloudFormation would invoke the function for Custom::WakeTarget, in Docker, and
    # the stack would stay CREATE_IN_PROGRESS: it deploys without that resource (which
    # test_wake_resources checks in the template; tests/integration/test_wake_target.py runs
    # its handler), the permission and the environment with it.
    without_custom = {k: v for k, v in body["Resources"].items() if k != "WakeTarget"}
    sam = deploy(
        emulator,
        "engines",
        {**body, "Resources": without_custom},
        {
            "Subnets": ",".join(provisioned.subnets),
            "SecurityGroups": provisioned.security_group,
            "TaskRoleArns": "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
            "CreateHttpApi": "true",
            "MorningStartSchedule": "cron(0 7 ? * MON-FRI *)",
            "EveningStopSchedule": "cron(0 19 ? * MON-FRI *)",
            "ScheduledEngines": "auth,pdf",
            **{f"{e}TargetGroupArns": alb_outputs[f"{e}TargetGroupArns"] for e in ENGINES},
            "WakeTargetGroupArn": alb_outputs["WakeTargetGroupArn"],
            "PdfListenerRuleArn": alb_outputs["PdfListenerRuleArn"],
        },
    )
    yield Deployed(alb=alb, sam=sam, sam_template=body, certificate=certificate)
    emulator.reset()


def test_alb_stack(emulator: Emulator, deployed: Deployed) -> None:
    assert deployed.alb["StackStatus"] == "CREATE_COMPLETE"
    elbv2 = emulator.clients().elbv2
    alb_outputs = outputs(deployed.alb)
    for engine, port in (
        ("auth", 8080),
        ("pdf", 9080),
        ("fa", 2531),
        ("users", 8080),
        ("batch", 8080),
    ):
        arn = alb_outputs[f"{engine.capitalize()}TargetGroupArns"]
        group = elbv2.describe_target_groups(TargetGroupArns=[arn])["TargetGroups"][0]
        assert (group["TargetType"], group["Port"]) == ("ip", port)
        assert (group["HealthCheckIntervalSeconds"], group["HealthyThresholdCount"]) == (5, 2)
    balancer = resources(emulator, "engines-alb")["LoadBalancer"]["PhysicalResourceId"]
    by_port = {
        listener["Port"]: listener
        for listener in elbv2.describe_listeners(LoadBalancerArn=balancer)["Listeners"]
    }
    assert by_port[443]["Protocol"] == "HTTPS"
    assert by_port[443]["Certificates"][0]["CertificateArn"] == deployed.certificate
    assert by_port[80]["DefaultActions"][0]["Type"] == "redirect"
    rules = elbv2.describe_rules(ListenerArn=by_port[443]["ListenerArn"])["Rules"]
    paths = sorted(
        c["PathPatternConfig"]["Values"][0] for r in rules for c in r.get("Conditions", [])
    )
    assert paths == ["/api/auth/*", "/api/batch/*", "/api/fa/*", "/api/pdf/*", "/api/users/*"]
    assert "AuthTargetGroupArns=arn:" in alb_outputs["ParameterOverrides"]
    names = {
        elbv2.describe_target_groups(TargetGroupArns=[alb_outputs[f"{e}TargetGroupArns"]])[
            "TargetGroups"
        ][0]["TargetGroupName"]
        for e in ENGINES
    }
    assert not names & {f"start-engines-{e.lower()}" for e in ENGINES}  # generated, not fixed
    ec2 = emulator.clients().ec2
    engines_group = alb_outputs["EnginesSecurityGroup"]
    balancer_group = alb_outputs["LoadBalancerSecurityGroup"]
    (described,) = ec2.describe_security_groups(GroupIds=[engines_group])["SecurityGroups"]
    sources = [
        (p["FromPort"], p["ToPort"], pair["GroupId"])
        for p in described["IpPermissions"]
        for pair in p.get("UserIdGroupPairs", [])
    ]
    assert sources == [(2531, 9080, balancer_group)]  # the ALB, not a CIDR
    assert not [p for p in described["IpPermissions"] if p.get("IpRanges")]


def test_alb_stack_wake(emulator: Emulator, deployed: Deployed) -> None:
    """WakeableEngines=pdf: pdf's rule starts on the Lambda target group, the others on their own."""
    elbv2 = emulator.clients().elbv2
    alb_outputs = outputs(deployed.alb)
    wake = alb_outputs["WakeTargetGroupArn"]
    (group,) = elbv2.describe_target_groups(TargetGroupArns=[wake])["TargetGroups"]
    assert (group["TargetType"], group["HealthCheckEnabled"]) == ("lambda", False)
    rules = elbv2.describe_rules(RuleArns=[alb_outputs[f"{e}ListenerRuleArn"] for e in ENGINES])
    forwards = {
        r["Conditions"][0]["PathPatternConfig"]["Values"][0]: forward_weights(r["Actions"])
        for r in rules["Rules"]
    }
    own = {e: alb_outputs[f"{e}TargetGroupArns"] for e in ENGINES}
    assert forwards == {  # asleep, pdf's own group stays attached at weight 0
        f"/api/{e.lower()}/*": ((wake, 1), (own[e], 0)) if e == "Pdf" else ((own[e], 1),)
        for e in ENGINES
    }
    overrides = dict(pair.split("=", 1) for pair in alb_outputs["ParameterOverrides"].split())
    assert overrides["WakeTargetGroupArn"] == wake
    assert overrides["PdfListenerRuleArn"] == alb_outputs["PdfListenerRuleArn"]
    # a rule ARN turns wake on for its engine: only the wakeable engines' are passed on
    assert not {f"{e}ListenerRuleArn" for e in ENGINES if e != "Pdf"} & set(overrides)


def test_sam_stack_resources(emulator: Emulator, deployed: Deployed) -> None:
    assert deployed.sam["StackStatus"] == "CREATE_COMPLETE"
    created = resources(emulator, "engines")
    expected = {
        "StartEnginesFunction",
        "TaskStateFunction",
        "LeaseTable",
        "DeadLetterQueue",
        "StartEnginesLogGroup",
        "TaskStateLogGroup",
        "StartEnginesRole",
        "TaskStateRole",
        "MorningStartRule",
        "EveningStopRule",
        "SyncRule",
        "StartEnginesFunctionCommands",
        "TaskStateFunctionTaskStateChange",
    }
    assert expected <= set(created)
    assert "StartEngineStateMachine" not in created  # CreateStateMachine defaults to false
    # moto's CloudFormation has no API Gateway v2, so the HTTP API is checked in the template
    routes = {
        r["Properties"]["RouteKey"]: r
        for r in deployed.sam_template["Resources"].values()
        if r["Type"] == "AWS::ApiGatewayV2::Route"
    }
    assert sorted(routes) == [
        "GET /engines",
        "GET /engines/{service}",
        "POST /engines/{service}/start",
        "POST /engines/{service}/stop",
    ]
    assert {r["Properties"]["AuthorizationType"] for r in routes.values()} == {"AWS_IAM"}
    invoke_configs = [
        r
        for r in deployed.sam_template["Resources"].values()
        if r["Type"] == "AWS::Lambda::EventInvokeConfig"
    ]
    assert len(invoke_configs) == 2
    for config in invoke_configs:
        assert config["Properties"]["MaximumRetryAttempts"] <= 2
        assert config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"] == {
            "Fn::GetAtt": ["DeadLetterQueue", "Arn"]
        }


def test_deployed_function_and_its_configuration(emulator: Emulator, deployed: Deployed) -> None:
    clients = emulator.clients()
    function = clients._client("lambda").get_function_configuration(FunctionName="engines-start")
    assert function["Runtime"] == "python3.12"
    # moto's CloudFormation drops Architectures; the translated template carries it
    translated = deployed.sam_template["Resources"]["StartEnginesFunction"]["Properties"]
    assert translated["Architectures"] == ["arm64"]
    assert function["Handler"] == "start_engines.lambda_function.lambda_handler"
    environment = function["Environment"]["Variables"]
    assert (
        environment["LEASE_TABLE"]
        == resources(emulator, "engines")["LeaseTable"]["PhysicalResourceId"]
    )
    alb_outputs = outputs(deployed.alb)
    for name in engine_names(environment):
        engine = get_service_config(name, environment)
        assert engine.target_group_arns == (alb_outputs[f"{name.capitalize()}TargetGroupArns"],)
    table = clients.dynamodb.describe_table(TableName=environment["LEASE_TABLE"])["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    # moto's CloudFormation drops TimeToLiveSpecification; the template carries it
    lease = deployed.sam_template["Resources"]["LeaseTable"]["Properties"]
    assert lease["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    logs = clients._client("logs").describe_log_groups(logGroupNamePrefix="/aws/lambda/engines-")[
        "logGroups"
    ]
    assert {g["retentionInDays"] for g in logs} == {30}
    # the pre-flight check, against the account as deployed, finds every engine ready, pdf
    # too: asleep, its rule keeps its own group at weight 0, attached and health-checked
    engines = Engines.build(clients, SystemClock(), environ=environment)
    assert engines.check() == []


def test_wake_resources(emulator: Emulator, deployed: Deployed) -> None:
    """The SAM stack fed WakeTargetGroupArn and PdfListenerRuleArn: the permission ELB needs,
    the environment, and the custom resource that registers the function."""
    alb_outputs = outputs(deployed.alb)
    wake = alb_outputs["WakeTargetGroupArn"]
    awslambda = emulator.clients()._client("lambda")
    policy = json.loads(awslambda.get_policy(FunctionName="engines-start")["Policy"])
    (grant,) = [
        s
        for s in policy["Statement"]
        if s["Principal"] == {"Service": "elasticloadbalancing.amazonaws.com"}
    ]
    assert grant["Action"] == "lambda:InvokeFunction"
    assert grant["Condition"]["ArnLike"]["AWS:SourceArn"] == wake  # that group only
    environment = awslambda.get_function_configuration(FunctionName="engines-start")["Environment"][
        "Variables"
    ]
    assert environment["WAKE_TARGET_GROUP_ARN"] == wake
    assert environment["PDF_LISTENER_RULE_ARN"] == alb_outputs["PdfListenerRuleArn"]
    assert not {f"{e.upper()}_LISTENER_RULE_ARN" for e in ENGINES if e != "Pdf"} & set(environment)
    # Custom::WakeTarget, in the translated template (moto cannot run it: see `deployed`)
    custom = deployed.sam_template["Resources"]["WakeTarget"]
    assert custom["Type"] == "Custom::WakeTarget"
    assert (custom["Condition"], custom["DependsOn"]) == ("WithWake", "WakePermission")
    function_arn = {"Fn::GetAtt": ["StartEnginesFunction", "Arn"]}
    assert custom["Properties"] == {
        "ServiceToken": function_arn,
        "TargetGroupArn": {"Ref": "WakeTargetGroupArn"},
        "FunctionArn": function_arn,
    }
    permission = deployed.sam_template["Resources"]["WakePermission"]
    assert permission["Condition"] == "WithWake"
    assert permission["Properties"]["SourceArn"] == {"Ref": "WakeTargetGroupArn"}


def test_wake_is_off_by_default() -> None:
    template = load(TEMPLATE)
    parameters = template["Parameters"]
    for name in ["WakeTargetGroupArn", *(f"{e}ListenerRuleArn" for e in ENGINES)]:
        assert parameters[name]["Default"] == ""
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["WAKE_TARGET_GROUP_ARN"] == {
        "Fn::If": ["WithWake", {"Ref": "WakeTargetGroupArn"}, {"Ref": "AWS::NoValue"}]
    }
    for engine in ENGINES:
        assert variables[f"{engine.upper()}_LISTENER_RULE_ARN"] == {
            "Fn::If": [
                f"{engine}Wakes",
                {"Ref": f"{engine}ListenerRuleArn"},
                {"Ref": "AWS::NoValue"},
            ]
        }


def test_deployed_rules(emulator: Emulator, deployed: Deployed) -> None:
    events = emulator.clients().events
    created = resources(emulator, "engines")

    def pattern(logical: str) -> dict[str, Any]:
        rule = events.describe_rule(Name=created[logical]["PhysicalResourceId"])
        result: dict[str, Any] = json.loads(rule["EventPattern"])
        return result

    commands = pattern("StartEnginesFunctionCommands")
    assert commands["source"] == ["custom.app"]  # nothing else anyone could fake
    assert commands["account"] == ["123456789012"]  # and only from this account
    assert {"Start ECS Task", "Stop ECS Task", "Stop ECS Tasks", "ECS Task Status"} <= set(
        commands["detail-type"]
    )
    task_state = pattern("TaskStateFunctionTaskStateChange")
    assert task_state["source"] == ["aws.ecs"]
    assert task_state["detail"]["startedBy"] == ["start-engines"]
    assert len(task_state["detail"]["clusterArn"]) == 5
    morning = events.list_targets_by_rule(Rule=created["MorningStartRule"]["PhysicalResourceId"])[
        "Targets"
    ][0]
    assert parse_invocation(json.loads(morning["Input"])).command == StartRequest(
        services=("auth", "pdf"), listed=True
    )
    reap_rule = created["ReapRule"]["PhysicalResourceId"]
    reap = events.list_targets_by_rule(Rule=reap_rule)["Targets"][0]
    assert parse_invocation(json.loads(reap["Input"])).command == ReapRequest(None)
    assert events.describe_rule(Name=reap_rule)["ScheduleExpression"] == "rate(5 minutes)"
    evening = events.list_targets_by_rule(Rule=created["EveningStopRule"]["PhysicalResourceId"])[
        "Targets"
    ][0]
    assert json.loads(evening["Input"])["detail"]["reason"] == "evening schedule"


# parliament's findings we accept, each with its reason: (role, statement, issue, action) -> why
LINT_IGNORES = {
    **{
        (role, "ListTasksOnlyInTheEnginesClusters", "RESOURCE_STAR", "ecs:ListTasks"): (
            "the reference lists only container-instance for ListTasks, and Fargate has none: "
            "AWS authorizes a cluster's ListTasks on *, and the ecs:cluster condition scopes it"
        )
        for role in ("StartEnginesRole", "TaskStateRole")
    },
    **{
        (role, "SwitchOnlyTheEnginesListenerRules", "RESOURCE_MISMATCH", MODIFY_RULE): (
            "ModifyRule takes an ALB rule (listener-rule/app/...) or an NLB one (listener-rule/"
            "net/...); parliament wants both, and the engines' rules are ALB rules"
        )
        for role in ("StartEnginesRole", "TaskStateRole")
    },
}


def test_parliament_finds_nothing_in_the_deployed_roles(
    emulator: Emulator, deployed: Deployed
) -> None:
    """parliament (the IAM linter) on each role's policies as IAM holds them, intrinsics
    resolved: unknown actions, resources or condition keys an action does not take, `*` where
    a resource could be named. Nothing, but for LINT_IGNORES."""
    from tests.infra.iam_lint import lint

    found = {
        (role, *finding.key): finding
        for role in ("StartEnginesRole", "TaskStateRole")
        for finding in lint(role_policies(emulator, "engines", role))
    }
    unexplained = [f"{key[0]}: {f}" for key, f in found.items() if key not in LINT_IGNORES]
    assert unexplained == []
    assert sorted(set(LINT_IGNORES) - set(found)) == [], "an ignore no finding needs any more"
