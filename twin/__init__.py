"""The stack as AWS runs it, on this machine: `cdk.out/` run on moto, real handlers and PostgreSQL (docs/twin.md)."""

from twin.containers import FunctionError
from twin.model import Clock, DrainResult, FunctionUsage, RuleRun, Usage
from twin.template import StackTemplate, TemplateError
from twin.twin import Twin

__all__ = [
    "Clock",
    "DrainResult",
    "FunctionError",
    "FunctionUsage",
    "RuleRun",
    "StackTemplate",
    "TemplateError",
    "Twin",
    "Usage",
]
