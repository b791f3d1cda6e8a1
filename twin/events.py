"""The events AWS services hand the functions, built as those services build them: EventBridge's scheduled event
and a target's Input / InputPath / InputTransformer, API Gateway's REST proxy event, the SQS event source's batch,
and the CloudFormation request the CDK Provider framework passes to its onEvent function. Pure."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from twin.template import ACCOUNT, REGION, CustomResourceSpec, RouteSpec, TargetSpec

_PLACEHOLDER = re.compile(r'"<(\w+)>"|<(\w+)>')


def scheduled_event(rule_arn: str, now: dt.datetime) -> dict[str, Any]:
    """What EventBridge's scheduler emits for a rule at `now`."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [rule_arn],
        "detail": {},
    }


def json_path(document: Any, path: str) -> Any:
    """A simple JSONPath (`$`, `$.a.b`, `$.a[0]`) as EventBridge's InputPath and InputPathsMap take them."""
    value = document
    for part in re.findall(r"\.([^.\[\]]+)|\[(\d+)\]", path.removeprefix("$")):
        key, index = part
        if value is None:
            return None
        value = value.get(key) if key else value[int(index)]
    return value


def target_input(target: TargetSpec, event: Mapping[str, Any]) -> Any:
    """The payload a target receives: its constant Input, the event at InputPath, the InputTransformer's template
    filled from the event, or the whole event."""
    if target.input is not None:
        return json.loads(target.input)
    if target.input_path is not None:
        return json_path(event, target.input_path)
    if target.input_transformer is not None:
        values = {key: json_path(event, path) for key, path in target.input_transformer["InputPathsMap"].items()}

        def fill(match: re.Match[str]) -> str:
            quoted, bare = match.groups()
            value = values[quoted or bare]
            if quoted:  # "<name>": the value as a string
                return json.dumps(value if isinstance(value, str) else json.dumps(value))
            return json.dumps(value)

        return json.loads(_PLACEHOLDER.sub(fill, target.input_transformer["InputTemplate"]))
    return dict(event)


def api_gateway_event(route: RouteSpec, body: bytes, headers: Mapping[str, str], source_ip: str) -> dict[str, Any]:
    """API Gateway's REST API proxy (AWS_PROXY) event for a request to `route` at its stage."""
    try:
        text, encoded = body.decode(), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    return {
        "resource": route.path,
        "path": route.path,
        "httpMethod": route.method,
        "headers": dict(headers),
        "multiValueHeaders": {key: [value] for key, value in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT,
            "resourcePath": route.path,
            "httpMethod": route.method,
            "path": f"/{route.stage}{route.path}",
            "stage": route.stage,
            "requestId": str(uuid.uuid4()),
            "protocol": "HTTP/1.1",
            "identity": {"sourceIp": source_ip, "userAgent": headers.get("User-Agent")},
            "requestTimeEpoch": int(dt.datetime.now(dt.UTC).timestamp() * 1000),
        },
        "body": text or None,
        "isBase64Encoded": encoded,
    }


def sqs_record(message: Mapping[str, Any], queue_arn: str) -> dict[str, Any]:
    """One record of the SQS event source's batch, from a ReceiveMessage message (all attributes asked)."""
    attributes = {key: str(value) for key, value in message.get("Attributes", {}).items()}
    message_attributes = {
        name: {
            "stringValue": value.get("StringValue"),
            "binaryValue": base64.b64encode(value["BinaryValue"]).decode() if "BinaryValue" in value else None,
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value["DataType"],
        }
        for name, value in message.get("MessageAttributes", {}).items()
    }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


def custom_resource_event(
    spec: CustomResourceSpec,
    request_type: str,
    *,
    properties: Mapping[str, Any],
    old_properties: Mapping[str, Any] | None,
    physical_id: str | None,
    stack_id: str,
) -> dict[str, Any]:
    """The CloudFormation request as the CDK Provider framework hands it to its onEvent function (ResponseURL
    hidden, as the framework hides it)."""
    event: dict[str, Any] = {
        "RequestType": request_type,
        "ServiceToken": properties.get("ServiceToken"),
        "ResponseURL": "...",
        "StackId": stack_id,
        "RequestId": str(uuid.uuid4()),
        "LogicalResourceId": spec.logical_id,
        "ResourceType": spec.resource_type,
        "ResourceProperties": dict(properties),
    }
    if request_type != "Create":
        event["PhysicalResourceId"] = physical_id
    if request_type == "Update":
        event["OldResourceProperties"] = dict(old_properties or {})
    return event
