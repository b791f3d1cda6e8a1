"""What a GraphQL operation will cost, read from its document before it runs (pure: no I/O).

Depth counts every field, introspection ones too (`__schema`, `__type`): a deep introspection is as deep as any
other query. Cost is the entries the operation's `entries` fields ask for in all: each alias's `count` (its
default when absent), so ten aliases of 100 cost 1,000 whatever they would find.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
)

ENTRIES_FIELD = "entries"


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}


def operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    """The operation that will run (None when the name matches none: execution reports that)."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name is not None and o.name.value == name), None)


def _fields(
    selection_set: SelectionSetNode | None, fragments: dict[str, FragmentDefinitionNode], seen: frozenset[str]
) -> list[FieldNode]:
    """The fields of a selection set, fragments spread in (a fragment spread inside itself counts once)."""
    found: list[FieldNode] = []
    for selection in selection_set.selections if selection_set else ():
        if isinstance(selection, FieldNode):
            found.append(selection)
        elif isinstance(selection, InlineFragmentNode):
            found += _fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                found += _fields(fragment.selection_set, fragments, seen | {selection.name.value})
    return found


def aliases(document: DocumentNode) -> int:
    """Every aliased field of the document, in every operation and fragment."""
    found = 0

    def count(selection_set: SelectionSetNode | None) -> None:
        nonlocal found
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode) and selection.alias is not None:
                found += 1
            if isinstance(selection, FieldNode | InlineFragmentNode):
                count(selection.selection_set)

    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode | FragmentDefinitionNode):
            count(definition.selection_set)
    return found


def depth(document: DocumentNode, name: str | None = None) -> int:
    """The deepest field nesting of the operation (`{ a { b } }` is 2), introspection included."""
    chosen = operation(document, name)
    if chosen is None:
        return 0
    fragments = _fragments(document)

    def below(selection_set: SelectionSetNode | None, seen: frozenset[str]) -> int:
        fields = _fields(selection_set, fragments, seen)
        return max((1 + below(f.selection_set, seen) for f in fields), default=0)

    return below(chosen.selection_set, frozenset())


def _count(field: FieldNode, variables: Mapping[str, Any], default: int) -> int:
    for argument in field.arguments or ():
        if argument.name.value != "count":
            continue
        value = argument.value
        if isinstance(value, IntValueNode):
            return int(value.value)
        if isinstance(value, VariableNode):
            given = variables.get(value.name.value)
            return given if isinstance(given, int) else default
    return default


def cost(document: DocumentNode, variables: Mapping[str, Any] | None, name: str | None, default_count: int) -> int:
    """The entries the operation's top-level `entries` fields ask for in all (aliases x count)."""
    chosen = operation(document, name)
    if chosen is None:
        return 0
    known: dict[str, Any] = {
        d.variable.name.value: int(d.default_value.value)
        for d in chosen.variable_definitions or ()
        if isinstance(d.default_value, IntValueNode)
    }
    known.update(variables or {})
    fields = _fields(chosen.selection_set, _fragments(document), frozenset())
    return sum(_count(f, known, default_count) for f in fields if f.name.value == ENTRIES_FIELD)
