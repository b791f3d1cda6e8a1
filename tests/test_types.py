"""The type checker is part of the suite: mypy, strict on `layers/` as pyproject.toml configures it, finds nothing.
(`make lint` runs the same; here a change that breaks the types fails the tests too.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_strict_on_the_layers_is_clean() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout + run.stderr
