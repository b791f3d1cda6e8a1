"""Every function's handler imports from its asset plus the layers alone, bundled as `cdk synth` bundles them, in a
clean interpreter of the runtime's Python that has only boto3 (what the Lambda runtime provides)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from cdk.link_fetcher_cdk.config import PROJECT_ROOT
from cdk.link_fetcher_cdk.local_lambda import LambdaTree, build_tree
from cdk.link_fetcher_cdk.python_runtime import PYTHON_VERSION
from link_fetcher.observability import FUNCTION_SERVICES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
FUNCTIONS = sorted(FUNCTION_SERVICES)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> LambdaTree:
    """Needs PyPI (or pip's cache / a local mirror) for the wheels, as `make synth` does."""
    return build_tree(PROJECT_ROOT, tmp_path_factory.mktemp("lambda"))


def test_the_tree_has_every_function(tree: LambdaTree) -> None:
    assert (
        sorted(tree.tasks)
        == FUNCTIONS
        == sorted(p.parent.name for p in (PROJECT_ROOT / "lambdas").glob("*/handler.py"))
    )


@pytest.mark.parametrize("function", FUNCTIONS)
def test_the_handler_imports_from_its_bundle_alone(tree: LambdaTree, function: str) -> None:
    imported = tree.run_import(function)
    assert imported.service == FUNCTION_SERVICES[function]
    # Everything loaded came from the bundle or the interpreter's standard library, nothing from this checkout.
    stdlib = Path(os.__file__).parent
    outside = [
        file for file in imported.files
        if not Path(file).is_relative_to(tree.root) and not Path(file).is_relative_to(stdlib)
    ]  # fmt: skip
    assert outside == []
    assert str(tree.tasks[function] / "handler.py") in imported.files
    # Cold start: Alembic (a few hundred ms) is loaded by the function that migrates, and by no other.
    assert ("alembic" in imported.modules) == (function == "migrate")
    # Nor SQLAlchemy's ORM (~100 ms): the tables are Core.
    assert "sqlalchemy.orm" not in imported.modules or function == "migrate"
    # The database driver is loaded in INIT with SQLAlchemy, not by the first request's first connection.
    assert ("psycopg" in imported.modules) == ("sqlalchemy" in imported.modules)
    assert imported.python == PYTHON_VERSION == "3.13"


def test_a_package_missing_from_the_layers_fails_the_import(tree: LambdaTree) -> None:
    """The check can fail: the CLI's click is not in the layers, and without blake3 the downloader cannot load."""
    with pytest.raises(ImportError, match="No module named 'click'"):
        tree.run_import("relay", "click")
    blake3 = tree.layers / "blake3"
    hidden = blake3.rename(tree.root / "blake3-hidden")
    try:
        with pytest.raises(ImportError, match="No module named 'blake3'"):
            tree.run_import("downloader")
    finally:
        hidden.rename(blake3)


def test_the_layers_carry_bytecode_valid_whatever_the_file_times(tree: LambdaTree) -> None:
    """Lambda cannot write __pycache__ (read-only), so the layers bring it: hash-based and unchecked (flags 0b01),
    so the times the asset zip gives the sources cannot make Python ignore it."""
    for module in (tree.layers / "link_fetcher" / "settings.py", tree.layers / "sqlalchemy" / "engine" / "base.py"):
        pyc = module.parent / "__pycache__" / f"{module.stem}.{sys.implementation.cache_tag}.pyc"
        assert int.from_bytes(pyc.read_bytes()[4:8], "little") == 0b01
