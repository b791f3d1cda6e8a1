"""Validate messages against docs/to-download.schema.json, the contract consumers code against."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMA_PATH = Path(__file__).parents[1] / "docs" / "to-download.schema.json"


@functools.cache
def _validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_errors(body: Any) -> list[str]:
    """Every way `body` breaks the schema (empty when it is valid); for the `oneOf` of found and deleted
    messages, the problems of each kind."""
    errors = []
    for error in _validator().iter_errors(body):
        for detail in error.context or [error]:
            errors.append(f"{'/'.join(map(str, detail.absolute_path)) or '(body)'}: {detail.message}")
    return errors


def assert_valid_message(body: Any) -> None:
    """Fail the test with every schema violation of a To Download body (SQS body or CloudEvent data)."""
    errors = schema_errors(body)
    assert not errors, f"message breaks docs/to-download.schema.json: {errors}"
