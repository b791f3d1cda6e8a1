"""A local copy of what Lambda runs, built by the stack's own bundling: the layers merged as Lambda extracts them
into /opt, each function's asset as /var/task, and boto3 as the runtime provides it. A handler is then imported
there by a clean interpreter of the runtime's Python (`-I -S`: no site-packages, no PYTHONPATH; `-B`: no bytecode
written, as on Lambda's read-only file system), so anything a handler needs that its asset and layers lack fails
here rather than in AWS. Used by tests/test_lambda_bundles.py and benchmarks/cold_start.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from link_fetcher.observability import FUNCTION_SERVICES
from link_fetcher.settings import read_settings

from .bundling import (
    PROVIDED,
    CopyBundling,
    PipLayerBundling,
    compile_bytecode,
    locked_versions,
    pip_install_command,
    project_layers,
)
from .environment import function_environment
from .python_runtime import runtime_python

# Lambda's order: the function, then the layers, then the runtime's own packages (boto3).
_IMPORT = """
import importlib, json, sys, time
task, layers, runtime, modules = sys.argv[1:5]
sys.path[:0] = [task, layers, runtime]
start = time.perf_counter()
loaded = [importlib.import_module(module) for module in modules.split(",")][0]
seconds = time.perf_counter() - start
files = sorted({getattr(m, "__file__", None) or "" for m in list(sys.modules.values())} - {""})
print(json.dumps({"seconds": seconds, "service": str(getattr(getattr(loaded, "logger", None), "service", "")),
                  "python": "%d.%d" % sys.version_info[:2], "modules": sorted(sys.modules), "files": files}))
"""


@dataclass(frozen=True)
class Imported:
    seconds: float
    service: str
    python: str  # the interpreter's major.minor
    modules: list[str]
    files: list[str]


@dataclass(frozen=True)
class LambdaTree:
    root: Path
    layers: Path  # /opt/python
    runtime: Path  # what the runtime provides: boto3 and its dependencies
    tasks: dict[str, Path]  # function name -> its asset (/var/task)

    def environment(self, function: str) -> dict[str, str]:
        """What the function's process sees: the runtime's variables and the stack's settings (defaults)."""
        return {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_LAMBDA_FUNCTION_NAME": function,
            "LAMBDA_TASK_ROOT": str(self.tasks[function]),
            "POWERTOOLS_SERVICE_NAME": FUNCTION_SERVICES[function],
            **function_environment(function, read_settings(None)),
        }

    def run_import(self, function: str, module: str = "handler") -> Imported:
        """Import `module` (the handler, or e.g. boto3; several comma-separated, in order) as `function`'s process
        would, in a fresh interpreter."""
        completed = subprocess.run(  # noqa: S603 - our interpreter, our arguments
            [runtime_python(), "-I", "-S", "-B", "-c", _IMPORT, str(self.tasks[function]), str(self.layers),
             str(self.runtime), module],
            env=self.environment(function),
            cwd=self.tasks[function],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        if completed.returncode != 0:
            raise ImportError(f"{function}: importing {module} failed:\n{completed.stderr}")
        return Imported(**json.loads(completed.stdout.splitlines()[-1]))


def build_tree(project_root: Path, target: Path) -> LambdaTree:
    """Bundle the layers and the function assets into `target` as `cdk synth` does, plus the runtime's boto3."""
    layers = target / "opt"
    for name, spec in project_layers(project_root).items():
        built = target / "layers" / name
        built.mkdir(parents=True)
        PipLayerBundling(spec).try_bundle(str(built))
        # Lambda extracts the layers into /opt in order, a later one overwriting an earlier one's files.
        shutil.copytree(built, layers, dirs_exist_ok=True)
    runtime = target / "runtime"
    versions = locked_versions(project_root / "Pipfile.lock")
    provided = sorted(f"{name}=={versions[name]}" for name in PROVIDED if name in versions)
    with tempfile.TemporaryDirectory() as scratch:
        no_constraints = Path(scratch) / "constraints.txt"
        no_constraints.write_text("")
        subprocess.run(pip_install_command(runtime, tuple(provided), no_constraints), check=True)  # noqa: S603
    # The runtime's boto3 comes compiled (pip compiles what it installs).
    compile_bytecode(runtime)
    tasks = {}
    for folder in sorted(path.parent for path in (project_root / "lambdas").glob("*/handler.py")):
        task = target / "task" / folder.name
        task.mkdir(parents=True)
        CopyBundling(folder, {}).try_bundle(str(task))
        tasks[folder.name] = task
    return LambdaTree(root=target, layers=layers / "python", runtime=runtime, tasks=tasks)
