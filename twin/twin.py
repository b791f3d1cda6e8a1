"""The twin: the synthesized stack run as AWS would run it, on this machine (docs/twin.md).

with Twin(Path("cdk.out"), database_url=..., cdse_base_url=catalogue.url) as twin:
    run = twin.run_rule("PollingSchedule")
    status, body = twin.push(notification, {"Authorization": ...})
    twin.drain_downloads()
    print(twin.usage())
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from twin import events
from twin.aws import CountingMotoServer, RequestCounter, StackResources, client, moto_patched
from twin.containers import Container, Fault, FunctionError, Invocation, merge_layers, runtime_dir
from twin.model import Clock, DrainResult, FunctionUsage, RuleRun, Usage
from twin.template import ACCOUNT, REGION, StackTemplate, TemplateError, referenced_id

# The CDSE endpoints the template's functions are configured with; the twin points them at `cdse_base_url`.
CDSE_HOSTS = ("catalogue.dataspace.copernicus.eu", "download.dataspace.copernicus.eu",
              "identity.dataspace.copernicus.eu")  # fmt: skip
DEFAULT_CDSE_ACCOUNT = {"username": "twin@example.org", "password": "twin-password"}
POLL_SECONDS = 0.05
# Lambda's retries of a failed asynchronous invocation (EventBridge → Lambda): two, a minute then two apart.
ASYNC_RETRY_WAITS = (60.0, 120.0)


class Twin:
    """The stack from `cdk_out` on moto, PostgreSQL at `database_url` and CDSE at `cdse_base_url`."""

    def __init__(
        self,
        cdk_out: Path,
        *,
        database_url: str,
        cdse_base_url: str,
        mode: Literal["push", "pull"] = "push",
        time_scale: float = 1.0,
        function_env: Mapping[str, Mapping[str, str]] | None = None,
        cdse_account: Mapping[str, str] | None = None,
        stack: str | None = None,
        min_timeout_seconds: float = 10.0,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.template = StackTemplate(cdk_out, stack)
        self.database_url, self.cdse_base_url = database_url, cdse_base_url.rstrip("/")
        self.mode, self.time_scale, self.min_timeout_seconds = mode, time_scale, min_timeout_seconds
        self.function_env = {key: dict(value) for key, value in (function_env or {}).items()}
        self.cdse_account = dict(cdse_account or DEFAULT_CDSE_ACCOUNT)
        self.clock = Clock()
        self.counter = RequestCounter()
        self.containers: dict[str, Container] = {}
        self._usage: dict[str, FunctionUsage] = {}
        self._usage_lock = threading.Lock()
        self._api_requests = 0
        self._transitions = 0
        self._custom: dict[str, tuple[str | None, dict[str, Any]]] = {}
        self._check_mode()

    def _check_mode(self) -> None:
        names = {spec.name for spec in self.template.functions().values()}
        pull = "subscription_puller" in names
        if (self.mode == "pull") != pull or (self.mode == "push" and not self.template.routes()):
            raise TemplateError(
                f"{self.template.cdk_out} was not synthesized for {self.mode} mode (DEPLOY_SUBSCRIPTION_MODE)"
            )

    # Lifecycle

    def __enter__(self) -> Twin:
        self._work = Path(tempfile.mkdtemp(prefix="twin-"))
        self.server = CountingMotoServer(self.counter)
        self.server.start()
        self.server.reset()
        self.endpoint = self.server.endpoint
        self._moto_port = os.environ.get("MOTO_PORT")
        # moto's ASL interpreter calls Lambda through the server at MOTO_PORT.
        os.environ["MOTO_PORT"] = self.endpoint.rsplit(":", 1)[1]
        self._routing = moto_patched(self._invoke_from_moto, self.time_scale)
        self._routing.__enter__()
        try:
            self._deploy()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for container in self.containers.values():
            container.stop()
        self._routing.__exit__(None, None, None)
        self.server.reset()
        self.server.stop()
        if self._moto_port is None:
            os.environ.pop("MOTO_PORT", None)
        else:
            os.environ["MOTO_PORT"] = self._moto_port
        shutil.rmtree(self._work, ignore_errors=True)

    def _deploy(self) -> None:
        """Create what the template declares, then run the custom resources' Create (the migration)."""
        self.resources = StackResources(self.template, self.endpoint)
        self.resources.create_queues(self.time_scale)
        self.resources.create_buckets()
        self.resources.create_secrets(self._filled_secrets())
        self.resources.name_functions()
        self.resources.create_state_machines()
        runtime = runtime_dir(self._work / "runtime")
        layer_dirs: dict[tuple[Path, ...], Path] = {}
        for spec in self.template.functions().values():
            if not spec.is_python or spec.asset is None:
                continue  # the CDK's own Node.js functions (custom resource providers): played by the twin
            opt = layer_dirs.setdefault(spec.layers, merge_layers(spec.layers, self._work / f"opt{len(layer_dirs)}"))
            self.containers[spec.logical_id] = Container(
                spec, opt=opt, runtime=runtime, environment=self._environment(spec.logical_id),
                log=self._work / f"{spec.name}.log", scale=self.function_scale(spec.timeout_seconds),
            )  # fmt: skip
        for resource in self.template.custom_resources():
            if resource.provider_function in self.containers:
                self.custom_resource("Create", resource.logical_id)
        self.reset_usage()

    def function_scale(self, timeout_seconds: int) -> float:
        """A function's time scale: the twin's, except that no timeout is scaled below `min_timeout_seconds` of
        real time (the functions' work is not compressed, only the waiting)."""
        floor = min(1.0, self.min_timeout_seconds / timeout_seconds)
        return max(self.time_scale, floor)

    def _filled_secrets(self) -> dict[str, dict[str, Any]]:
        """The secrets as docs/deploy.md has users fill them: the database's as RDS writes it (here pointing at
        `database_url`), the CDSE account's as {"username", "password"}; the push credentials stay generated."""
        url = urlsplit(self.database_url.replace("+psycopg", ""))
        database = {
            "engine": "postgres",
            "host": url.hostname or "127.0.0.1",
            "port": url.port or 5432,
            "username": url.username or "postgres",
            "password": url.password or "",
            "dbname": url.path.lstrip("/") or "postgres",
        }
        filled: dict[str, dict[str, Any]] = {}
        for spec in self.template.functions().values():
            for variable, value in (("DATABASE_SECRET_ARN", database), ("CDSE_SECRET_ARN", self.cdse_account)):
                if variable in spec.environment:
                    filled[self._secret_id(spec.environment[variable])] = dict(value)
        return filled

    def _secret_id(self, reference: Any) -> str:
        logical_id = referenced_id(reference)
        resource = self.template.resources[logical_id]
        if resource["Type"] == "AWS::SecretsManager::SecretTargetAttachment":
            return referenced_id(resource["Properties"]["SecretId"])
        return logical_id

    def _environment(self, logical_id: str) -> dict[str, str]:
        """The function's environment as Lambda gives it: the runtime's variables, the template's (intrinsics
        resolved, CDSE pointed at the fake), then `function_env`'s for this function."""
        spec = self.template.functions()[logical_id]
        variables = {key: str(self.resources.resolve(value)) for key, value in spec.environment.items()}
        for key, value in variables.items():
            host = urlsplit(value).hostname if value.startswith("https://") else None
            if host in CDSE_HOSTS:
                variables[key] = self.cdse_base_url
        for key, extra in self.function_env.items():
            if self.template.function(key).logical_id == logical_id:
                variables.update(extra)
        return {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "twin",
            "AWS_SECRET_ACCESS_KEY": "twin",
            "AWS_SESSION_TOKEN": "twin",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "AWS_LAMBDA_FUNCTION_NAME": spec.logical_id,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.logical_id}",
            "LAMBDA_TASK_ROOT": str(spec.asset),
            "_HANDLER": spec.handler,
            **variables,
        }

    # Invocations

    def container(self, function: str) -> Container:
        return self.containers[self.template.function(function).logical_id]

    def _run(self, container: Container, event: Any) -> Invocation:
        outcome = container.invoke(event)
        with self._usage_lock:
            usage = self._usage.setdefault(container.spec.name, FunctionUsage(container.spec.memory_mb))
            usage.invocations += 1
            usage.errors += outcome.error is not None
            usage.cold_starts += outcome.cold
            usage.seconds += outcome.seconds
        return outcome

    def _invoke_from_moto(self, function: str, payload: bytes) -> tuple[bytes, str | None]:
        outcome = self._run(self.container(function.rsplit(":", 1)[-1]), json.loads(payload or b"{}"))
        if outcome.error is not None:
            return json.dumps(outcome.error).encode(), "Unhandled"
        return json.dumps(outcome.result).encode(), None

    def invoke(self, function: str, event: Mapping[str, Any]) -> Any:
        """Invoke `function` (folder name, logical id or a unique part of it) with `event`; its result, or
        FunctionError."""
        outcome = self._run(self.container(function), dict(event))
        if outcome.error is not None:
            raise FunctionError(outcome.function, outcome.error)
        return outcome.result

    def timeout_next(self, function: str, after_seconds: float) -> None:
        """The next invocation of `function` times out after `after_seconds` (stack time): its context says so and
        the sandbox is stopped then, as Lambda stops a function at its timeout."""
        self.container(function).faults.append(Fault("timeout", after_seconds))

    def kill_next(self, function: str, after_seconds: float) -> None:
        """The next invocation of `function` has its process killed `after_seconds` (stack time) into it."""
        self.container(function).faults.append(Fault("kill", after_seconds))

    # Schedules

    def rules(self) -> list[str]:
        return sorted(self.template.rules())

    def run_rule(self, rule: str) -> RuleRun:
        """Fire a schedule rule at the clock's time: its target gets its input from the scheduled event as the
        template says, and runs to its end (a state machine execution, or a function's asynchronous invocation
        with Lambda's retries)."""
        spec = self.template.rule(rule)
        if len(spec.targets) != 1:
            raise TemplateError(f"{spec.logical_id} has {len(spec.targets)} targets; the twin plays one")
        (target,) = spec.targets
        rule_arn = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{self.resources.physical_name(spec.logical_id)}"
        payload = events.target_input(target, events.scheduled_event(rule_arn, self.clock.now()))
        kind = self.template.resources[target.logical_id]["Type"]
        started = time.monotonic()
        if kind == "AWS::StepFunctions::StateMachine":
            run = self._execute(spec.logical_id, target.logical_id, payload)
        else:
            run = self._invoke_async(spec.logical_id, target.logical_id, payload)
        return RuleRun(**{**run.__dict__, "seconds": time.monotonic() - started})

    def _invoke_async(self, rule: str, function: str, payload: Any) -> RuleRun:
        container = self.containers[function]
        for wait in (*ASYNC_RETRY_WAITS, None):
            outcome = self._run(container, payload)
            if outcome.error is None:
                return RuleRun(rule, function, payload, "SUCCEEDED", output=outcome.result)
            if wait is not None:
                time.sleep(wait * self.time_scale)
        assert outcome.error is not None
        return RuleRun(rule, function, payload, "FAILED", error=outcome.error.get("errorType"),
                       cause=outcome.error.get("errorMessage"))  # fmt: skip

    def start_execution(self, state_machine: str, payload: Any) -> str:
        """Start an execution (a backfill, as docs/deploy.md starts one); its ARN."""
        sfn = client("stepfunctions", self.endpoint)
        arn = self.resources.refs[state_machine]
        # EventBridge names each execution it starts uniquely.
        name = str(uuid.uuid4())
        return str(sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps(payload))["executionArn"])

    def wait_execution(self, execution_arn: str) -> dict[str, Any]:
        sfn = client("stepfunctions", self.endpoint)
        while True:
            described: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING":
                return described
            time.sleep(POLL_SECONDS)

    def _execute(self, rule: str, state_machine: str, payload: Any) -> RuleRun:
        arn = self.start_execution(state_machine, payload)
        described = self.wait_execution(arn)
        history = self.execution_history(arn)
        self._transitions += sum(1 for event in history if event.get("entered"))
        output = json.loads(described["output"]) if described.get("output") else None
        return RuleRun(rule, state_machine, payload, described["status"], output=output,
                       error=described.get("error"), cause=described.get("cause"), execution_arn=arn,
                       events=tuple(history))  # fmt: skip

    def execution_history(self, execution_arn: str) -> list[dict[str, Any]]:
        """The execution's events, each {"type", "entered" (state name, for *StateEntered), "failed"...}."""
        sfn = client("stepfunctions", self.endpoint)
        found = []
        for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn):
            for event in page["events"]:
                entered = event.get("stateEnteredEventDetails", {}).get("name")
                found.append({"type": event["type"], "entered": entered, "id": event["id"]})
        return found

    # Push, queue, custom resources

    def push(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """A request to the push route (POST at its path) through API Gateway's proxy integration: the function's
        response, 502 when it fails, 504 when it outlives the integration."""
        routes = [route for route in self.template.routes() if route.method == "POST"]
        if len(routes) != 1:
            raise TemplateError(f"the template has {len(routes)} POST routes; the push route is the one")
        (route,) = routes
        self._api_requests += 1
        event = events.api_gateway_event(route, body, headers, source_ip="127.0.0.1")
        outcome = self._run(self.containers[route.function], event)
        if outcome.error is not None:
            timed_out = outcome.error.get("errorType") == "Sandbox.Timedout"
            return (504, b'{"message": "Endpoint request timed out"}') if timed_out else (
                502, b'{"message": "Internal server error"}')  # fmt: skip
        return proxy_response(outcome.result)

    def push_credentials(self) -> dict[str, str]:
        """What the push function's SUBSCRIPTION_SECRET_ARN holds (read as the user reads it for the subscription)."""
        spec = next(s for s in self.template.functions().values() if "SUBSCRIPTION_SECRET_ARN" in s.environment)
        return self.secret(self._secret_id(spec.environment["SUBSCRIPTION_SECRET_ARN"]))

    def secret(self, logical_id: str) -> dict[str, Any]:
        manager = client("secretsmanager", self.endpoint)
        value: dict[str, Any] = json.loads(
            manager.get_secret_value(SecretId=self.resources.refs[logical_id])["SecretString"]
        )
        return value

    @property
    def queue_urls(self) -> dict[str, str]:
        """Queue URLs by logical id."""
        return {key: self.resources.refs[key] for key in self.template.of_type("AWS::SQS::Queue")}

    def queue_url(self, key: str) -> str:
        """The URL of the queue whose logical id contains `key` (e.g. `ToDownloadDeadLetters`)."""
        matches = [url for logical_id, url in self.queue_urls.items() if key.lower() in logical_id.lower()]
        exact = [url for logical_id, url in self.queue_urls.items() if logical_id.lower().startswith(key.lower())]
        if len(matches) == 1 or len(exact) == 1:
            return (matches if len(matches) == 1 else exact)[0]
        raise TemplateError(f"{key!r} names {len(matches)} queues of {sorted(self.queue_urls)}")

    @property
    def bucket(self) -> str:
        (logical_id,) = self.template.of_type("AWS::S3::Bucket")
        return self.resources.refs[logical_id]

    def drain_downloads(self, max_batches: int | None = None) -> DrainResult:
        """The SQS event sources (the downloader's) polled until their queue gives nothing: batches of the
        mapping's BatchSize; with ReportBatchItemFailures, the records not listed as failures are deleted; a batch
        whose invocation fails stays whole on the queue (visible again after the visibility timeout)."""
        totals: dict[str, Any] = collections.defaultdict(int, reported_failures=[], errors=[])
        sqs = client("sqs", self.endpoint, counted=True)  # the event source's polls and deletes are billed
        for source in self.template.event_sources():
            url, arn = self.resources.refs[source.queue], self.resources.attributes[(source.queue, "Arn")]
            while max_batches is None or totals["batches"] < max_batches:
                messages = sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=source.batch_size, MessageSystemAttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])  # fmt: skip
                if not messages:
                    break
                self._one_batch(sqs, source, url, [events.sqs_record(m, arn) for m in messages], totals)
        return DrainResult(
            batches=totals["batches"], records=totals["records"], succeeded=totals["succeeded"],
            reported_failures=tuple(totals["reported_failures"]), failed_batches=totals["failed_batches"],
            errors=tuple(totals["errors"]),
        )  # fmt: skip

    def _one_batch(
        self, sqs: Any, source: Any, url: str, records: list[dict[str, Any]], totals: dict[str, Any]
    ) -> None:
        totals["batches"] += 1
        totals["records"] += len(records)
        outcome = self._run(self.containers[source.function], {"Records": records})
        ids = {record["messageId"] for record in records}
        if outcome.error is not None:
            totals["failed_batches"] += 1
            totals["errors"].append({"errorType": outcome.error.get("errorType"),
                                     "errorMessage": str(outcome.error.get("errorMessage"))[:500]})  # fmt: skip
            return
        failed: set[str] = set()
        if source.report_batch_item_failures and isinstance(outcome.result, dict):
            failed = {item.get("itemIdentifier") for item in outcome.result.get("batchItemFailures") or []}
        if not failed <= ids:  # Lambda treats a response naming other messages as a failure of the whole batch
            failed = ids
        totals["reported_failures"].extend(sorted(failed))
        done = [record for record in records if record["messageId"] not in failed]
        totals["succeeded"] += len(done)
        for start in range(0, len(done), 10):
            entries = [{"Id": str(index), "ReceiptHandle": record["receiptHandle"]}
                       for index, record in enumerate(done[start : start + 10])]  # fmt: skip
            sqs.delete_message_batch(QueueUrl=url, Entries=entries)

    def custom_resource(
        self, request_type: Literal["Create", "Update", "Delete"], resource: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Send a custom resource (the migration, by default the only Python-backed one) the request CloudFormation
        sends on create / update / delete, through its CDK Provider: its onEvent function's response. `properties`
        replace the template's on an Update (e.g. a new MigrationsFingerprint)."""
        candidates = [spec for spec in self.template.custom_resources() if spec.provider_function in self.containers]
        spec = next((s for s in candidates if resource in (None, s.logical_id)), None)
        if spec is None or spec.provider_function is None:
            raise TemplateError(f"no custom resource {resource or ''} backed by a Python function")
        physical_id, old = self._custom.get(spec.logical_id, (None, {}))
        new = self.resources.resolve(dict(properties or spec.properties))
        stack_id = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{self.template.stack_name}/twin"
        event = events.custom_resource_event(spec, request_type, properties=new, old_properties=old,
                                             physical_id=physical_id, stack_id=stack_id)  # fmt: skip
        outcome = self._run(self.containers[spec.provider_function], event)
        if outcome.error is not None:
            raise FunctionError(outcome.function, outcome.error)
        response: dict[str, Any] = outcome.result or {}
        # The Provider framework's default physical id: the request id on Create, the current one after.
        physical_id = response.get("PhysicalResourceId") or physical_id or event["RequestId"]
        self._custom[spec.logical_id] = (physical_id, new)
        return response

    # Usage

    def usage(self) -> Usage:
        with self._usage_lock:
            functions = {name: FunctionUsage(**vars(usage)) for name, usage in self._usage.items()}
        requests: dict[str, dict[str, int]] = collections.defaultdict(dict)
        with self.counter.lock:
            for (service, action), count in self.counter.counts.items():
                requests[service][action] = count
        return Usage(functions, dict(requests), self._api_requests, self._transitions)

    def reset_usage(self) -> None:
        with self._usage_lock:
            self._usage.clear()
        self.counter.reset()
        self._api_requests = self._transitions = 0

    def log_of(self, function: str) -> str:
        """What the function printed (its CloudWatch Logs), all containers so far."""
        return self.container(function).log.read_text(errors="replace")


def proxy_response(result: Any) -> tuple[int, bytes]:
    """API Gateway's reading of a proxy integration's response; 502 for one it cannot read."""
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
        return 502, b'{"message": "Internal server error"}'
    body = result.get("body") or ""
    if result.get("isBase64Encoded"):
        import base64

        return result["statusCode"], base64.b64decode(body)
    return result["statusCode"], body.encode()
