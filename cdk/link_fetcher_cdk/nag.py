"""cdk-nag (AwsSolutions) acknowledgments, made next to the construct they concern, each with its reason."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Accept finding `rule_id` (e.g. `AwsSolutions-IAM5[Resource::*]`) on `scope` and everything below it."""
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def arn_of(construct: IConstruct) -> str:
    """How cdk-nag writes the ARN of `construct`'s resource in a finding: `<LogicalId.Arn>`."""
    stack = Stack.of(construct)
    return f"<{stack.get_logical_id(construct.node.default_child)}.Arn>"
