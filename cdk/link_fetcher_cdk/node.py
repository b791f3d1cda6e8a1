"""The Node.js the CDK runs on: the project's own (package.json's `node` package, installed by `npm ci` into
node_modules/.bin), a release jsii supports, whatever Node the system has or lacks.

jsii starts `node` from PATH (or `JSII_NODE`) when `aws_cdk` is first imported, so `use_project_node` must run
before that import; the Makefile does the same for the CDK CLI. Imports nothing of the CDK itself.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NODE_BIN = PROJECT_ROOT / "node_modules" / ".bin"
# The oldest Node major release the toolchain may run on: older ones are past their end of life.
MINIMUM_NODE_MAJOR = 22


def use_project_node() -> None:
    """Put node_modules/.bin first on this process's PATH (inherited by what it starts), once."""
    entries = os.environ.get("PATH", "").split(os.pathsep)
    if str(NODE_BIN) not in entries:
        os.environ["PATH"] = os.pathsep.join([str(NODE_BIN), *entries])


def jsii_node() -> str | None:
    """The `node` executable jsii would start in this process's environment, or None when there is none."""
    return shutil.which(os.environ.get("JSII_NODE", "node"))


def node_major(executable: str) -> int:
    """The major release of the Node executable (`node --version` prints e.g. v24.21.0)."""
    version = subprocess.run([executable, "--version"], capture_output=True, text=True, check=True).stdout  # noqa: S603
    match = re.fullmatch(r"v(\d+)\.\d+\.\d+\s*", version)
    if match is None:
        raise ValueError(f"{executable} --version printed {version!r}")
    return int(match.group(1))
