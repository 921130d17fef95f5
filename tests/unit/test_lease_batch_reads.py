"""BatchGetItem's unprocessed keys (DynamoDB under throttling): a path no emulator produces, so
botocore's Stubber."""

from __future__ import annotations

import boto3
from botocore.stub import Stubber

from start_engines.lease import Lease

TABLE = "leases"


def test_an_event_record_left_unprocessed_is_unknown_not_absent() -> None:
    dynamodb = boto3.client(
        "dynamodb", region_name="us-east-2", aws_access_key_id="x", aws_secret_access_key="x"
    )
    keys = [{"pk": {"S": f"event#e1#{name}"}} for name in ("auth", "pdf", "fa")]
    with Stubber(dynamodb) as stub:
        stub.add_response(
            "batch_get_item",
            {
                "Responses": {
                    TABLE: [{"pk": {"S": "event#e1#auth"}, "taskArns": {"SS": ["arn:task/1"]}}]
                },
                "UnprocessedKeys": {TABLE: {"Keys": [keys[2]], "ConsistentRead": True}},
            },
            {"RequestItems": {TABLE: {"Keys": keys, "ConsistentRead": True}}},
        )
        found = Lease(dynamodb, TABLE).events_tasks("e1", ["auth", "pdf", "fa"])
        stub.assert_no_pending_responses()
    # auth has a record, pdf has none, fa was not read: its start reads it on its own
    assert found == {"auth": ("arn:task/1",), "pdf": ()}
