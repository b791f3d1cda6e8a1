"""The Python version of the functions' Lambda runtime, and an interpreter of it on this machine. Nothing here
imports aws_cdk, so the twin can run the functions without starting jsii's Node."""

from __future__ import annotations

import shutil
import sys

PYTHON_VERSION = "3.13"


def runtime_python(version: str = PYTHON_VERSION) -> str:
    """An interpreter of Python `version` (major.minor, the runtime's unless given): this one, or `pythonX.Y` on
    PATH."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    found = shutil.which(f"python{version}")
    if found is None:
        raise RuntimeError(f"the functions run on Python {version}: python{version} is needed")
    return found
