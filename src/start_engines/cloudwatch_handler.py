"""CloudWatchHandler: the load balancers' traffic metrics (GetMetricData). ClientError stops here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from start_engines.aws import AWS_ERRORS, translate

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from mypy_boto3_cloudwatch import CloudWatchClient

MAX_QUERIES = 500  # GetMetricData takes at most 500 queries a call
PERIOD = 60


@dataclass(frozen=True)
class TrafficQuery:
    """One load-balancer metric of one target group, e.g. AWS/ApplicationELB RequestCount."""

    id: str
    namespace: str
    metric: str
    target_group: str  # the TargetGroup dimension: targetgroup/<name>/<id>
    load_balancer: str  # the LoadBalancer dimension: app/<name>/<id> or net/<name>/<id>


class CloudWatchHandler:
    def __init__(self, cloudwatch: CloudWatchClient) -> None:
        self._cloudwatch = cloudwatch

    def series(
        self, queries: Sequence[TrafficQuery], start: datetime, end: datetime
    ) -> dict[str, list[tuple[datetime, float]]]:
        """Per query, the per-minute Sums over [start, end] (empty: no datapoint at all)."""
        found: dict[str, list[tuple[datetime, float]]] = {q.id: [] for q in queries}
        for first in range(0, len(queries), MAX_QUERIES):
            batch = queries[first : first + MAX_QUERIES]
            kwargs: dict[str, Any] = {
                "MetricDataQueries": [
                    {
                        "Id": q.id,
                        "MetricStat": {
                            "Metric": {
                                "Namespace": q.namespace,
                                "MetricName": q.metric,
                                "Dimensions": [
                                    {"Name": "TargetGroup", "Value": q.target_group},
                                    {"Name": "LoadBalancer", "Value": q.load_balancer},
                                ],
                            },
                            "Period": PERIOD,
                            "Stat": "Sum",
                        },
                        "ReturnData": True,
                    }
                    for q in batch
                ],
                "StartTime": start,
                "EndTime": end,
            }
            try:
                while True:
                    response = self._cloudwatch.get_metric_data(**kwargs)
                    for result in response.get("MetricDataResults", []):
                        points = zip(
                            result.get("Timestamps", []), result.get("Values", []), strict=False
                        )
                        found[result["Id"]].extend((at, float(value)) for at, value in points)
                    if not response.get("NextToken"):
                        break
                    kwargs["NextToken"] = response["NextToken"]
            except AWS_ERRORS as exc:
                raise translate(exc, "GetMetricData") from exc
        return found
