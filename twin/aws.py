"""The AWS side of the twin: a moto server in this process (ThreadedMotoServer) that counts the requests it
serves, the stack's queues, bucket and secrets created in it from the template, and Lambda's Invoke routed to
the twin's containers (moto's ASL interpreter invokes the state machine's functions through it)."""

from __future__ import annotations

import collections
import io
import json
import logging
import secrets
import string
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
from moto.awslambda.models import LambdaBackend
from moto.core.config import default_user_config
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from werkzeug.serving import make_server

from twin.template import ACCOUNT, REGION, StackTemplate, resolve

CREDENTIALS = {"aws_access_key_id": "twin", "aws_secret_access_key": "twin"}
# The twin's own requests (creating resources, waiting for executions) are not the stack's: not counted.
INTERNAL_KEY = "twin-internal"


class RequestCounter:
    """AWS requests by (service, action), read off each request as it reaches the server."""

    def __init__(self) -> None:
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self.lock = threading.Lock()

    def wrap(self, app: Callable[..., Any]) -> Callable[..., Any]:
        def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            key = request_kind(environ, body)
            if key is not None:
                with self.lock:
                    self.counts[key] += 1
            return app(environ, start_response)

        return counted

    def by_service(self) -> dict[str, int]:
        totals: collections.Counter[str] = collections.Counter()
        with self.lock:
            for (service, _), count in self.counts.items():
                totals[service] += count
        return dict(totals)

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()


def request_kind(environ: Mapping[str, Any], body: bytes) -> tuple[str, str] | None:
    """(service, action) of a signed AWS request: the service from the SigV4 credential scope, the action from
    X-Amz-Target, the query or form's Action, else the method and path (REST APIs: S3, Lambda)."""
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    if "Credential=" not in authorization:
        return None  # moto's own API (reset, config), not an AWS request
    scope = authorization.split("Credential=", 1)[1].split(",", 1)[0].split("/")
    if scope[0] == INTERNAL_KEY:
        return None
    service = scope[3] if len(scope) > 3 else "unknown"
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return service, target.rsplit(".", 1)[-1]
    for text in (environ.get("QUERY_STRING", ""), body.decode("latin-1") if body[:7] == b"Action=" else ""):
        for part in text.split("&"):
            if part.startswith("Action="):
                return service, unquote(part[len("Action=") :])
    path = urlsplit(environ.get("PATH_INFO", "")).path
    if service == "lambda" and path.endswith("/invocations"):
        return service, "Invoke"
    return service, f"{environ.get('REQUEST_METHOD')} {'object' if path.strip('/').count('/') else 'bucket'}"


class CountingMotoServer(ThreadedMotoServer):
    """ThreadedMotoServer whose application counts requests (the same app otherwise)."""

    def __init__(self, counter: RequestCounter) -> None:
        super().__init__(ip_address="127.0.0.1", port=0, verbose=False)
        self.counter = counter

    def _server_entry(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # not a line per request
        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(
            self._ip_address, self._port, self.counter.wrap(app), True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()

    def reset(self) -> None:
        """Forget every resource: moto's backends are this process's, shared by every server and mock in it."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")  # noqa: S310 - ours
        with urllib.request.urlopen(request, timeout=30):  # noqa: S310 - our own server
            pass

    @property
    def endpoint(self) -> str:
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"


class ScaledTime:
    """The `time` module as moto's ASL retrier sees it: its waits (IntervalSeconds, backoff) scaled."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds * self.scale)


@contextmanager
def moto_patched(invoke: Callable[[str, bytes], tuple[bytes, str | None]], time_scale: float) -> Iterator[None]:
    """For as long as the twin runs: moto's Lambda Invoke answered by `invoke(function name or ARN, payload) ->
    (payload, function error)`, moto's Step Functions executing state machines, their retry waits scaled."""
    original = LambdaBackend.invoke
    was_executing = default_user_config["stepfunctions"]["execute_state_machine"]
    setattr(retrier_decl, "time", ScaledTime(time_scale))  # noqa: B010 - the module's `time`, replaced

    def routed(
        self: LambdaBackend, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
    ) -> bytes:
        payload = body.encode() if isinstance(body, str) else (body or b"{}")
        reply, function_error = invoke(function_name, payload)
        if function_error:
            response_headers["x-amz-function-error"] = function_error
        response_headers["Content-Length"] = str(len(reply))
        return reply

    LambdaBackend.invoke = routed  # type: ignore[method-assign]
    default_user_config["stepfunctions"]["execute_state_machine"] = True
    try:
        yield
    finally:
        LambdaBackend.invoke = original  # type: ignore[method-assign]
        default_user_config["stepfunctions"]["execute_state_machine"] = was_executing
        setattr(retrier_decl, "time", time)  # noqa: B010


def client(service: str, endpoint: str, *, counted: bool = False) -> Any:
    """A client of the twin's moto server; `counted`: its requests are the stack's (e.g. the event source's polls)."""
    credentials = CREDENTIALS if counted else {**CREDENTIALS, "aws_access_key_id": INTERNAL_KEY}
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint, **credentials)  # type: ignore[call-overload]


def generated_password(spec: Mapping[str, Any]) -> str:
    """A password as GenerateSecretString would make it (length, excluded characters or punctuation)."""
    alphabet = string.ascii_letters + string.digits
    if not spec.get("ExcludePunctuation"):
        alphabet += "".join(c for c in string.punctuation if c not in spec.get("ExcludeCharacters", ""))
    return "".join(secrets.choice(alphabet) for _ in range(int(spec.get("PasswordLength", 32))))


def secret_value(spec: Mapping[str, Any], filled: Mapping[str, Any] | None) -> str:
    """A secret's value: what the user puts there (`filled`, as docs/deploy.md tells), else what CloudFormation
    generates from GenerateSecretString (its template plus the generated key)."""
    if filled is not None:
        return json.dumps(dict(filled))
    generate = spec.get("GenerateSecretString", {})
    if "SecretStringTemplate" in generate:
        value = json.loads(generate["SecretStringTemplate"])
        value[generate["GenerateStringKey"]] = generated_password(generate)
        return json.dumps(value)
    return spec.get("SecretString") or generated_password(generate)


class StackResources:
    """The physical resources the twin creates in moto from the template, and what Ref / Fn::GetAtt give."""

    def __init__(self, template: StackTemplate, endpoint: str) -> None:
        self.template, self.endpoint = template, endpoint
        self.refs: dict[str, str] = {}
        self.attributes: dict[tuple[str, str], str] = {}

    def lookup(self, logical_id: str, attribute: str | None) -> Any:
        if attribute is None:
            if logical_id in self.refs:
                return self.refs[logical_id]
        elif (logical_id, attribute) in self.attributes:
            return self.attributes[(logical_id, attribute)]
        kind = self.template.resources.get(logical_id, {}).get("Type", "unknown")
        raise KeyError(f"the twin does not play {logical_id} ({kind}), asked for {attribute or 'Ref'}")

    def resolve(self, value: Any) -> Any:
        return resolve(value, self.lookup)

    def physical_name(self, logical_id: str, limit: int = 64) -> str:
        return f"{self.template.stack_name}-{logical_id}"[:limit]

    def create_queues(self, visibility_scale: float) -> None:
        """Each AWS::SQS::Queue with its synthesized attributes (FIFO, deduplication, redrive, retention); the
        visibility timeout and delay are scaled like every other wait of the twin."""
        sqs = client("sqs", self.endpoint)
        queues = self.template.of_type("AWS::SQS::Queue")
        # Dead-letter queues first: a redrive policy names its queue's ARN.
        order = sorted(queues, key=lambda key: "RedrivePolicy" in queues[key].get("Properties", {}))
        for logical_id in order:
            props = queues[logical_id].get("Properties", {})
            name = props.get("QueueName") or self.physical_name(logical_id, 75)
            fifo = bool(props.get("FifoQueue"))
            if fifo and not name.endswith(".fifo"):
                name += ".fifo"
            attributes = {key: _attribute(self.resolve(value)) for key, value in props.items() if key not in
                          ("QueueName", "Tags", "KmsMasterKeyId")}  # fmt: skip
            for key in ("VisibilityTimeout", "DelaySeconds"):
                if key in attributes:
                    attributes[key] = str(max(0, round(int(attributes[key]) * visibility_scale)))
            url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            self.refs[logical_id] = url
            self.attributes[(logical_id, "Arn")] = arn
            self.attributes[(logical_id, "QueueName")] = name
            self.attributes[(logical_id, "QueueUrl")] = url

    def create_buckets(self) -> None:
        s3 = client("s3", self.endpoint)
        for logical_id, resource in self.template.of_type("AWS::S3::Bucket").items():
            name = resource.get("Properties", {}).get("BucketName") or self.physical_name(logical_id, 63).lower()
            s3.create_bucket(Bucket=name)
            self.refs[logical_id] = name
            self.attributes[(logical_id, "Arn")] = f"arn:aws:s3:::{name}"

    def create_secrets(self, filled: Mapping[str, Mapping[str, Any]]) -> None:
        """Each secret, with the value `filled` gives for its logical id (see Twin), else the generated one; a
        SecretTargetAttachment's Ref is its secret's ARN, as in CloudFormation."""
        manager = client("secretsmanager", self.endpoint)
        for logical_id, resource in self.template.of_type("AWS::SecretsManager::Secret").items():
            props = resource.get("Properties", {})
            value = secret_value(props, filled.get(logical_id))
            arn = manager.create_secret(Name=self.physical_name(logical_id), SecretString=value)["ARN"]
            self.refs[logical_id] = arn
        for logical_id, resource in self.template.of_type("AWS::SecretsManager::SecretTargetAttachment").items():
            self.refs[logical_id] = self.resolve(resource["Properties"]["SecretId"])

    def name_functions(self) -> None:
        for logical_id in self.template.of_type("AWS::Lambda::Function"):
            self.refs[logical_id] = logical_id
            self.attributes[(logical_id, "Arn")] = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{logical_id}"

    def create_state_machines(self) -> None:
        sfn = client("stepfunctions", self.endpoint)
        for logical_id, props in self.template.state_machines().items():
            definition = self.resolve(props["DefinitionString"])
            arn = sfn.create_state_machine(
                name=self.physical_name(logical_id, 80),
                definition=definition,
                roleArn=f"arn:aws:iam::{ACCOUNT}:role/{self.physical_name(logical_id)}-role",
            )["stateMachineArn"]
            self.refs[logical_id] = arn
            self.attributes[(logical_id, "Name")] = self.physical_name(logical_id, 80)


def _attribute(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)
