"""Which run-time settings reach which function, derived from what each handler declares it reads.

Each handler (lambdas/<name>/handler.py) lists the settings groups it reads in `SETTINGS_READ`. A function gets,
from the `.env` the stack is synthesized with (or the environment), the variable of every field of those groups,
except the fields link_fetcher/settings.py marks
- `SetByStack`: the stack sets them from a resource it creates (the database secret, the queue, the bucket…);
- `LocalOnly`: read only by the CLI and local servers, with the reason no function gets them.

`tests/test_cdk_environment.py` checks every field is deployed somewhere or marked once, and that the template
gives each function what its handler declares.
"""

from __future__ import annotations

import ast
import functools
import importlib
from enum import Enum
from pathlib import PurePath

from pydantic import SecretStr

from link_fetcher.settings import Settings, SettingsGroup, groups, not_deployed, variables

from .config import PROJECT_ROOT

HANDLERS = PROJECT_ROOT / "lambdas"


@functools.cache
def settings_read(function: str) -> tuple[SettingsGroup, ...]:
    """The settings groups `function`'s handler declares (`SETTINGS_READ`), each once. The declaration is read
    from the handler's source and its names taken from the modules it imports them from, without running the
    handler, whose import starts its logger and metrics (for that process, with that process's stdout)."""
    path = HANDLERS / function / "handler.py"
    tree = ast.parse(path.read_text(), str(path))
    imported_from = {
        alias.asname or alias.name: node.module
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }
    [declaration] = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and [ast.unparse(target) for target in node.targets] == ["SETTINGS_READ"]
    ]
    if not isinstance(declaration, ast.Tuple):
        raise TypeError(f"{path}: SETTINGS_READ is a tuple of settings groups")
    declared: list[SettingsGroup] = []
    for element in declaration.elts:
        named = element.value if isinstance(element, ast.Starred) else element
        if not isinstance(named, ast.Name) or named.id not in imported_from:
            raise TypeError(f"{path}: SETTINGS_READ holds names imported from link_fetcher, not {ast.unparse(element)}")
        value = getattr(importlib.import_module(imported_from[named.id]), named.id)
        declared.extend(value if isinstance(element, ast.Starred) else [value])
    return tuple(dict.fromkeys(declared))


def deployed_variables(group: SettingsGroup) -> dict[str, str]:
    """field -> variable, for the fields of `group` a function that reads it is given."""
    return {field: variable for field, variable in variables(group) if not not_deployed(group, field)}


def variable_value(value: object) -> str:
    """`value` written the way the settings read it back from the environment."""
    if isinstance(value, SecretStr):
        raise TypeError("a secret is never deployed in plain text: give the function a Secrets Manager ARN")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(variable_value(item) for item in value)
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, str | int | float | PurePath):
        return str(value)
    raise TypeError(f"no environment form for {type(value).__name__}")


def function_environment(function: str, settings: Settings) -> dict[str, str]:
    """The variables `function` gets from `settings`: each deployed field of the groups it reads that has a value."""
    name_of = {group: name for name, group in groups().items()}
    environment = {}
    for group in settings_read(function):
        values = getattr(settings, name_of[group])
        for field, variable in deployed_variables(group).items():
            if (value := getattr(values, field)) is not None:
                environment[variable] = variable_value(value)
    return environment
