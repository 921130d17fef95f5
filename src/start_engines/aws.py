"""The one place AWS clients are built, and where botocore errors are translated.

Clients come from one botocore Session and one Config (standard retries, bounded timeouts),
are created lazily on first use and never at import. botocore, not boto3: boto3 adds only
s3transfer and resources, which we never use, and they cost more to import than the rest of
the cold start (bench/cold.py). botocore itself honours AWS_ENDPOINT_URL, so the emulator
needs no code path of its own.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from start_engines.errors import AwsError, StartEnginesError

if TYPE_CHECKING:
    from collections.abc import Mapping

    import boto3
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_elbv2 import ElasticLoadBalancingv2Client
    from mypy_boto3_events import EventBridgeClient

# 8 attempts ride out heavy throttling (0.3^8 < 1e-4 per call) within botocore's own backoff.
MAX_ATTEMPTS = 8
# Outgoing events are best effort: never hold an answer up for long retrying them.
BEST_EFFORT_ATTEMPTS = 3
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 20


def default_config() -> Config:
    return Config(
        retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        max_pool_connections=50,
    )


class Clients:
    """Lazily built, cached, thread-safe clients for one session and config."""

    def __init__(
        self,
        session: botocore.session.Session | boto3.Session | None = None,
        config: Config | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        self._session = session
        self._config = config
        self._endpoint_url = endpoint_url
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _client(self, service: str, attempts: int | None = None) -> Any:
        with self._lock:
            client = self._clients.get(service)
            if client is None:
                if self._session is None:
                    self._session = botocore.session.get_session()
                if self._config is None:
                    self._config = default_config()
                config = self._config
                if attempts is not None:
                    config = config.merge(
                        Config(retries={"mode": "standard", "max_attempts": attempts})
                    )
                kwargs: dict[str, Any] = {"config": config}
                if self._endpoint_url:
                    kwargs["endpoint_url"] = self._endpoint_url
                try:
                    client = _create(self._session, service, kwargs)
                except BotoCoreError as exc:
                    raise AwsError(f"cannot create the {service} client: {exc}") from exc
                self._clients[service] = client
            return client

    @property
    def ecs(self) -> ECSClient:
        client: ECSClient = self._client("ecs")
        return client

    @property
    def ec2(self) -> EC2Client:
        client: EC2Client = self._client("ec2")
        return client

    @property
    def elbv2(self) -> ElasticLoadBalancingv2Client:
        client: ElasticLoadBalancingv2Client = self._client("elbv2")
        return client

    @property
    def dynamodb(self) -> DynamoDBClient:
        client: DynamoDBClient = self._client("dynamodb")
        return client

    @property
    def events(self) -> EventBridgeClient:
        client: EventBridgeClient = self._client("events", attempts=BEST_EFFORT_ATTEMPTS)
        return client

    @property
    def cloudwatch(self) -> CloudWatchClient:
        client: CloudWatchClient = self._client("cloudwatch")
        return client

    @property
    def cloudformation(self) -> CloudFormationClient:
        client: CloudFormationClient = self._client("cloudformation")
        return client


def _create(
    session: botocore.session.Session | boto3.Session, service: str, kwargs: dict[str, Any]
) -> Any:
    if isinstance(session, botocore.session.Session):
        return session.create_client(service, **kwargs)
    return session.client(service, **kwargs)  # type: ignore[call-overload]  # a boto3 Session


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def translate(
    exc: Exception,
    action: str,
    *,
    service: str | None = None,
    codes: Mapping[str, type[StartEnginesError]] | None = None,
    details: dict[str, Any] | None = None,
) -> StartEnginesError:
    """Turn a botocore error into the project's error; the caller raises it `from exc`."""
    extra = dict(details or {})
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        error_class = (codes or {}).get(code, AwsError)
        extra["awsErrorCode"] = code
        return error_class(f"{action} failed ({code}): {message}", service=service, details=extra)
    return AwsError(f"{action} failed: {exc}", service=service, details=extra)


# ResponseParserError: an answer botocore cannot read (an HTML error page from a proxy, say).
AWS_ERRORS: tuple[type[Exception], ...] = (ClientError, BotoCoreError, ResponseParserError)


def has_code(exc: Exception, *codes: str, message_contains: str = "") -> bool:
    """True for a ClientError with one of `codes` (and, if given, that text in its message)."""
    if not isinstance(exc, ClientError) or error_code(exc) not in codes:
        return False
    message = str(exc.response.get("Error", {}).get("Message", "")).lower()
    return message_contains.lower() in message
