"""The synthesized stack as the twin reads it: `cdk.out/` after `make synth`, and nothing else.

Everything the twin runs comes from here: the functions (handler, runtime, timeout, memory, asset and layers, the
environment with its intrinsic functions), the schedules and their targets, the queues, bucket and secrets, the
state machine's definition, the event source mapping, the API Gateway routes and the custom resources with their
provider. Pure: reading JSON, no AWS.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from link_fetcher.observability import FUNCTION_SERVICES

REGION = "us-east-1"
ACCOUNT = "123456789012"
PARTITION = "aws"
PSEUDO = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::Partition": PARTITION,
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::NoValue": None,
}
_FOLDER_OF_SERVICE = {str(service): folder for folder, service in FUNCTION_SERVICES.items()}


class TemplateError(ValueError):
    """The template lacks what the twin needs, or names something ambiguously."""


@dataclasses.dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    name: str  # the lambdas/ folder it was built from (by its POWERTOOLS_SERVICE_NAME), else the logical id
    handler: str
    runtime: str
    timeout_seconds: int
    memory_mb: int
    asset: Path | None  # the function's bundle (cdk.out/asset.*), /var/task
    layers: tuple[Path, ...]  # the layers' bundles in the template's order (extracted in that order into /opt)
    environment: Mapping[str, Any]  # Environment.Variables, intrinsic functions unresolved

    @property
    def is_python(self) -> bool:
        return self.runtime.startswith("python")

    @property
    def python_version(self) -> str:
        """The runtime's Python (major.minor): `3.13` of `python3.13`."""
        return self.runtime.removeprefix("python")


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    arn: Any  # unresolved: Ref / Fn::GetAtt of the state machine or function
    input: str | None
    input_path: str | None
    input_transformer: Mapping[str, Any] | None
    retry_attempts: int | None

    @property
    def logical_id(self) -> str:
        return referenced_id(self.arn)


@dataclasses.dataclass(frozen=True)
class RuleSpec:
    logical_id: str
    schedule: str | None
    description: str
    targets: tuple[TargetSpec, ...]


@dataclasses.dataclass(frozen=True)
class EventSourceSpec:
    logical_id: str
    queue: str  # logical id of the queue
    function: str  # logical id of the function
    batch_size: int
    report_batch_item_failures: bool
    maximum_concurrency: int | None


@dataclasses.dataclass(frozen=True)
class RouteSpec:
    method: str
    path: str  # the API's resource path, e.g. /events (API Gateway's `resource`)
    function: str  # logical id of the integrated function
    integration: str  # AWS_PROXY
    stage: str
    rate_limit: float | None
    burst_limit: int | None


@dataclasses.dataclass(frozen=True)
class CustomResourceSpec:
    logical_id: str
    resource_type: str
    service_token: Any
    provider_function: str | None  # the function the CDK Provider framework calls (USER_ON_EVENT_FUNCTION_ARN)
    properties: Mapping[str, Any]  # with ServiceToken, as CloudFormation sends them


def referenced_id(value: Any) -> str:
    """The logical id a `Ref` or `Fn::GetAtt` names."""
    if isinstance(value, Mapping):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            return str(target[0] if isinstance(target, list) else target.split(".")[0])
    raise TemplateError(f"not a Ref or Fn::GetAtt: {value!r}")


def find_references(value: Any) -> Iterator[str]:
    """Every logical id `value` refers to, wherever it is nested."""
    if isinstance(value, Mapping):
        if "Ref" in value and isinstance(value["Ref"], str) and not value["Ref"].startswith("AWS::"):
            yield value["Ref"]
        elif "Fn::GetAtt" in value:
            yield referenced_id(value)
        else:
            for item in value.values():
                yield from find_references(item)
    elif isinstance(value, list):
        for item in value:
            yield from find_references(item)


def resolve(value: Any, lookup: Callable[[str, str | None], Any]) -> Any:
    """`value` with its intrinsic functions evaluated; `lookup(logical_id, attribute or None for Ref)` gives what a
    resource's Ref / Fn::GetAtt returns. Fn::Join, Fn::Sub (variables only), Fn::Select and pseudo parameters."""
    if isinstance(value, list):
        return [resolve(item, lookup) for item in value]
    if not isinstance(value, Mapping):
        return value
    if len(value) != 1 or not next(iter(value)).startswith(("Ref", "Fn::")):
        return {key: resolve(item, lookup) for key, item in value.items()}
    ((function, argument),) = value.items()
    if function == "Ref":
        return PSEUDO[argument] if argument in PSEUDO else lookup(argument, None)
    if function == "Fn::GetAtt":
        logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
        return lookup(logical_id, attribute)
    if function == "Fn::Join":
        separator, items = argument
        return separator.join(str(resolve(item, lookup)) for item in resolve(items, lookup))
    if function == "Fn::Select":
        index, items = argument
        return resolve(items, lookup)[int(resolve(index, lookup))]
    if function == "Fn::Sub":
        return _substitute(argument, lookup)
    raise TemplateError(f"the twin does not evaluate {function}")


def _substitute(argument: Any, lookup: Callable[[str, str | None], Any]) -> str:
    text, variables = (argument, {}) if isinstance(argument, str) else argument
    out, rest = [], text
    while "${" in rest:
        before, _, after = rest.partition("${")
        name, _, rest = after.partition("}")
        out.append(before)
        if name in variables:
            out.append(str(resolve(variables[name], lookup)))
        elif "." in name:
            logical_id, attribute = name.split(".", 1)
            out.append(str(lookup(logical_id, attribute)))
        else:
            out.append(str(PSEUDO[name] if name in PSEUDO else lookup(name, None)))
    return "".join([*out, rest])


class StackTemplate:
    """One stack's template from `cdk.out/`, with its assets."""

    def __init__(self, cdk_out: Path, stack: str | None = None) -> None:
        self.cdk_out = cdk_out.resolve()
        manifest = json.loads((self.cdk_out / "manifest.json").read_text())
        stacks = {
            name: artifact["properties"]["templateFile"]
            for name, artifact in manifest["artifacts"].items()
            if artifact["type"] == "aws:cloudformation:stack"
        }
        if stack is None:
            if len(stacks) != 1:
                raise TemplateError(f"{cdk_out} holds {len(stacks)} stacks; name one of {sorted(stacks)}")
            (stack,) = stacks
        self.stack_name = stack
        self.body: dict[str, Any] = json.loads((self.cdk_out / stacks[stack]).read_text())
        self.resources: dict[str, dict[str, Any]] = self.body["Resources"]

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {key: value for key, value in self.resources.items() if value["Type"] == kind}

    def properties(self, logical_id: str) -> dict[str, Any]:
        return dict(self.resources[logical_id].get("Properties", {}))

    def _asset(self, logical_id: str) -> Path | None:
        path = self.resources[logical_id].get("Metadata", {}).get("aws:asset:path")
        return self.cdk_out / path if path else None

    def functions(self) -> dict[str, FunctionSpec]:
        """Every function by logical id."""
        specs = {}
        for logical_id, resource in self.of_type("AWS::Lambda::Function").items():
            props = resource["Properties"]
            variables = props.get("Environment", {}).get("Variables", {})
            layers = tuple(self._asset(referenced_id(layer)) for layer in props.get("Layers", []))
            specs[logical_id] = FunctionSpec(
                logical_id=logical_id,
                name=_FOLDER_OF_SERVICE.get(variables.get("POWERTOOLS_SERVICE_NAME", ""), logical_id),
                handler=props.get("Handler", ""),
                runtime=props.get("Runtime", ""),
                timeout_seconds=int(props.get("Timeout", 3)),
                memory_mb=int(props.get("MemorySize", 128)),
                asset=self._asset(logical_id),
                layers=tuple(layer for layer in layers if layer is not None),
                environment=variables,
            )
        return specs

    def function(self, key: str) -> FunctionSpec:
        """A function by its lambdas/ folder name, its logical id, or a substring of its logical id that names one."""
        functions = self.functions()
        for spec in functions.values():
            if key in (spec.name, spec.logical_id):
                return spec
        matches = [spec for spec in functions.values() if key.lower() in spec.logical_id.lower()]
        if len(matches) != 1:
            found = sorted(spec.logical_id for spec in matches) or "none"
            raise TemplateError(f"{key!r} names {found} of the functions {sorted(functions)}")
        return matches[0]

    def rules(self) -> dict[str, RuleSpec]:
        rules = {}
        for logical_id, resource in self.of_type("AWS::Events::Rule").items():
            props = resource["Properties"]
            targets = tuple(
                TargetSpec(
                    arn=target["Arn"],
                    input=target.get("Input"),
                    input_path=target.get("InputPath"),
                    input_transformer=target.get("InputTransformer"),
                    retry_attempts=target.get("RetryPolicy", {}).get("MaximumRetryAttempts"),
                )
                for target in props.get("Targets", [])
            )
            rules[logical_id] = RuleSpec(
                logical_id, props.get("ScheduleExpression"), props.get("Description", ""), targets
            )
        return rules

    def rule(self, key: str) -> RuleSpec:
        """A rule by logical id, or by a substring of it that names one (e.g. `PollingSchedule`)."""
        rules = self.rules()
        if key in rules:
            return rules[key]
        matches = [rule for logical_id, rule in rules.items() if key.lower() in logical_id.lower()]
        if len(matches) != 1:
            raise TemplateError(f"{key!r} names {len(matches)} of the rules {sorted(rules)}")
        return matches[0]

    def event_sources(self) -> list[EventSourceSpec]:
        return [
            EventSourceSpec(
                logical_id=logical_id,
                queue=referenced_id(props["EventSourceArn"]),
                function=referenced_id(props["FunctionName"]),
                batch_size=int(props.get("BatchSize", 10)),
                report_batch_item_failures="ReportBatchItemFailures" in props.get("FunctionResponseTypes", []),
                maximum_concurrency=props.get("ScalingConfig", {}).get("MaximumConcurrency"),
            )
            for logical_id, props in (
                (key, value["Properties"]) for key, value in self.of_type("AWS::Lambda::EventSourceMapping").items()
            )
        ]

    def _resource_path(self, logical_id: str) -> str:
        props = self.properties(logical_id)
        parent = props["ParentId"]
        prefix = "" if "Fn::GetAtt" in parent else self._resource_path(referenced_id(parent))
        return f"{prefix}/{props['PathPart']}"

    def routes(self) -> list[RouteSpec]:
        """API Gateway methods integrated with a function, with their stage's throttling."""
        stages = list(self.of_type("AWS::ApiGateway::Stage").values())
        stage = stages[0]["Properties"] if stages else {}
        settings: dict[str, Any] = next(iter(stage.get("MethodSettings", [])), {})
        routes = []
        for resource in self.of_type("AWS::ApiGateway::Method").values():
            props = resource["Properties"]
            integration = props.get("Integration", {})
            functions = [ref for ref in find_references(integration.get("Uri")) if ref in self.resources]
            if not functions:
                continue
            resource_id = props.get("ResourceId")
            path = "/" if "Fn::GetAtt" in resource_id else self._resource_path(referenced_id(resource_id))
            routes.append(
                RouteSpec(
                    method=props["HttpMethod"],
                    path=path,
                    function=functions[0],
                    integration=integration.get("Type", ""),
                    stage=stage.get("StageName", "prod"),
                    rate_limit=settings.get("ThrottlingRateLimit"),
                    burst_limit=settings.get("ThrottlingBurstLimit"),
                )
            )
        return routes

    def custom_resources(self) -> list[CustomResourceSpec]:
        specs = []
        for logical_id, resource in self.resources.items():
            kind = resource["Type"]
            if not (kind.startswith("Custom::") or kind == "AWS::CloudFormation::CustomResource"):
                continue
            props = resource["Properties"]
            token = referenced_id(props["ServiceToken"])
            framework = self.resources.get(token, {}).get("Properties", {})
            user = framework.get("Environment", {}).get("Variables", {}).get("USER_ON_EVENT_FUNCTION_ARN")
            specs.append(
                CustomResourceSpec(logical_id, kind, props["ServiceToken"], user and referenced_id(user), props)
            )
        return specs

    def state_machines(self) -> dict[str, dict[str, Any]]:
        return {key: value["Properties"] for key, value in self.of_type("AWS::StepFunctions::StateMachine").items()}
