"""Every module of `layers/` imports on its own, in a process that has loaded no other module of the project: an
import cycle (a module that works only when something else was imported first) fails here."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from link_fetcher.cli import COMMANDS, LazyGroup, cli, load_command, main

pytestmark = pytest.mark.unit

LAYERS = Path(__file__).resolve().parents[1] / "layers"
ROOTS = (LAYERS / "core", LAYERS / "db")
# Not importable by design: `__main__` runs the CLI and exits; Alembic's env.py runs only inside an Alembic command.
NOT_IMPORTED = {"link_fetcher.__main__", "db.migrations.env"}

# The walker imports the third-party libraries once, then forks a child per module: each child starts with no
# module of the project loaded, which is what a fresh interpreter would see, at a fraction of the cost.
WALKER = r"""
import importlib, os, sys, traceback
for library in ("alembic", "alembic.op", "aws_lambda_powertools", "aws_lambda_powertools.metrics", "blake3", "boto3",
                "botocore", "click", "cloudevents", "fastapi", "msgspec", "pydantic", "pydantic_settings", "pystac",
                "pystac_client", "redis", "redis.asyncio", "requests", "rich", "rich.progress", "rich.table",
                "sqlalchemy", "sqlalchemy.dialects.postgresql", "sqlalchemy.orm", "starlette", "strawberry",
                "strawberry.fastapi", "uvicorn"):
    try:
        importlib.import_module(library)
    except ImportError:
        pass
project = ("link_fetcher", "db")
assert not [m for m in sys.modules if m.split(".")[0] in project], "the walker itself loaded project modules"
failed = []
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    if os.waitpid(pid, 0)[1] != 0:
        failed.append(name)
print("\n".join(failed))
sys.exit(1 if failed else 0)
"""


def layer_modules() -> list[str]:
    modules = []
    for root in ROOTS:
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            if name not in NOT_IMPORTED:
                modules.append(name)
    return modules


def test_the_walk_covers_every_feature() -> None:
    modules = layer_modules()
    assert len(modules) > 60
    for expected in ("link_fetcher.cli", "link_fetcher.fetching.commands", "db.outbox", "db.migrations.versions"):
        assert any(module.startswith(expected) for module in modules), expected


def test_every_module_of_layers_imports_on_its_own() -> None:
    run = subprocess.run(
        [sys.executable, "-c", WALKER, *layer_modules()],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=LAYERS.parent,
    )
    assert run.returncode == 0, f"modules that do not import on their own:\n{run.stdout}\n{run.stderr[-4000:]}"


def test_help_lists_each_command_with_its_own_summary() -> None:
    """`--help` shows the summaries of COMMANDS without importing the features: they must say what the commands
    themselves say."""
    for name, (_, summary) in COMMANDS.items():
        assert load_command(name).get_short_help_str(limit=1000) == summary, name
    assert isinstance(cli, LazyGroup)


def test_help_imports_no_feature() -> None:
    probe = (
        "import sys; from link_fetcher.cli import main\n"
        "code = main(['--help'])\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('link_fetcher', 'db', 'sqlalchemy', 'pydantic')]\n"
        "print(code, sorted(loaded))"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    code, loaded = run.stdout.strip().splitlines()[-1].split(" ", 1)
    assert code == "0"
    # The plumbing only: no feature, and neither the database nor the settings libraries.
    plumbing = {"link_fetcher", "link_fetcher.cli", "link_fetcher.cli_support", "link_fetcher.text"}
    assert set(ast.literal_eval(loaded)) <= plumbing
    assert "subscriptions" in run.stdout and "stac-fetch" in run.stdout


def test_unknown_command_is_a_usage_error(capsys) -> None:
    assert main(["no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err
