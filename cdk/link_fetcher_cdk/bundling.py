"""Lambda layers bundled on this machine with pip (no Docker): a package from `layers/` plus its third-party
dependencies as manylinux x86_64 wheels for the Lambda Python runtime, pinned to the versions in Pipfile.lock."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .python_runtime import PYTHON_VERSION

RUNTIME = lambda_.Runtime.PYTHON_3_13
# The Python 3.13 runtime runs on Amazon Linux 2023 (glibc 2.34): manylinux_2_28 and manylinux2014 (glibc 2.17)
# wheels load there; pip prefers the first platform a package has a wheel for.
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux2014_x86_64")
# The Lambda runtime ships boto3; a second copy would only grow the layer. Our own packages are copied as source.
PROVIDED = frozenset({"boto3", "botocore", "s3transfer", "link-fetcher-db", "link-fetcher-core"})
IGNORED = ("__pycache__", "*.pyc", "*.egg-info")
# Lambda's file system is read-only: without bytecode in the layer, every cold start compiles every module it
# imports (most of a handler's import time: docs/benchmarks.md). So the layers carry it, compiled by an
# interpreter of the runtime's version and checked by nothing but that version (unchecked-hash: the zip's file
# times cannot invalidate it). Built elsewhere, the layers go without, and work as before, only slower to start.
COMPILE_BYTECODE = f"{sys.version_info.major}.{sys.version_info.minor}" == PYTHON_VERSION


@dataclass(frozen=True)
class LayerSpec:
    """What goes in a layer: the source package folder and the requirements pip installs next to it."""

    package_dir: Path
    requirements: tuple[str, ...]
    constraints: tuple[str, ...]

    def fingerprint(self) -> str:
        """Changes whenever the layer's content would: the package's files, the pins and the target platform."""
        digest = hashlib.sha256()
        for path in sorted(self.package_dir.rglob("*")):
            relative = path.relative_to(self.package_dir)
            if (
                path.is_file()
                and not any(relative.match(pattern) for pattern in IGNORED)
                and "__pycache__" not in relative.parts
            ):
                digest.update(str(relative).encode())
                digest.update(path.read_bytes())
        digest.update(
            json.dumps(
                [self.requirements, self.constraints, WHEEL_PLATFORMS, PYTHON_VERSION, COMPILE_BYTECODE]
            ).encode()
        )
        return digest.hexdigest()


def locked_versions(pipfile_lock: Path) -> dict[str, str]:
    """`{canonical name: version}` of the runtime packages in Pipfile.lock (editable path entries have none)."""
    default = json.loads(pipfile_lock.read_text())["default"]
    return {
        canonicalize_name(name): entry["version"].removeprefix("==")
        for name, entry in default.items()
        if "version" in entry
    }


def pinned(requirements: list[str], versions: dict[str, str]) -> tuple[str, ...]:
    """Each requirement pinned to its locked version (extras kept); packages the runtime provides dropped."""
    pins = []
    for text in requirements:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if name in PROVIDED:
            continue
        if name not in versions:
            raise ValueError(
                f"{requirement.name} is not in Pipfile.lock; run `pipenv lock` (the Pipfile installs layers/)"
            )
        extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
        pins.append(f"{name}{extras}=={versions[name]}")
    return tuple(sorted(pins))


def layer_spec(project_dir: Path, package: str, pipfile_lock: Path) -> LayerSpec:
    """The layer for `project_dir` (a folder of layers/ with a pyproject.toml) holding its package `package` and
    the package's declared dependencies (not its optional ones: those serve the CLI)."""
    project = tomllib.loads((project_dir / "pyproject.toml").read_text())["project"]
    versions = locked_versions(pipfile_lock)
    constraints = tuple(f"{name}=={version}" for name, version in sorted(versions.items()) if name not in PROVIDED)
    requirements = pinned(project.get("dependencies", []), versions)
    return LayerSpec(package_dir=project_dir / package, requirements=requirements, constraints=constraints)


def project_layers(project_root: Path) -> dict[str, LayerSpec]:
    """The stack's layers by name: the db package and the core package, each with its dependencies."""
    lock = project_root / "Pipfile.lock"
    return {
        "db": layer_spec(project_root / "layers" / "db", "db", lock),
        "core": layer_spec(project_root / "layers" / "core", "link_fetcher", lock),
    }


def pip_install_command(target: Path, requirements: tuple[str, ...], constraints_file: Path) -> list[str]:
    return [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
        "--target", str(target), "--only-binary=:all:",
        *(option for platform in WHEEL_PLATFORMS for option in ("--platform", platform)),
        "--implementation", "cp", "--python-version", PYTHON_VERSION,
        "--constraint", str(constraints_file), *requirements,
    ]  # fmt: skip


@jsii.implements(ILocalBundling)
class PipLayerBundling:
    """Builds the layer in `output_dir/python` (where Lambda puts layers on sys.path)."""

    def __init__(self, spec: LayerSpec) -> None:
        self.spec = spec

    def try_bundle(self, output_dir: str, _options: object = None) -> bool:
        target = Path(output_dir) / "python"
        shutil.copytree(
            self.spec.package_dir, target / self.spec.package_dir.name, ignore=shutil.ignore_patterns(*IGNORED)
        )
        if self.spec.requirements:
            with tempfile.TemporaryDirectory() as scratch:
                constraints_file = Path(scratch) / "constraints.txt"
                constraints_file.write_text("\n".join(self.spec.constraints) + "\n")
                command = pip_install_command(target, self.spec.requirements, constraints_file)
                subprocess.run(command, check=True)  # noqa: S603 - our interpreter's pip, pinned arguments
        if COMPILE_BYTECODE:
            compile_bytecode(target)
        return True


def compile_bytecode(folder: Path) -> None:
    """Write the bytecode of every module under `folder` next to it, as this interpreter imports it. A process of
    its own: compileall's worker pool does not survive inside the CDK's bundling callback."""
    command = [
        sys.executable,
        "-m",
        "compileall",
        "-q",
        "-j",
        "0",
        "--invalidation-mode",
        "unchecked-hash",
        str(folder),
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)  # noqa: S603 - our interpreter, our arguments


@jsii.implements(ILocalBundling)
class CopyBundling:
    """A function folder plus files from elsewhere in the repository (e.g. the STAC watches file)."""

    def __init__(self, folder: Path, extra_files: dict[str, Path]) -> None:
        self.folder = folder
        self.extra_files = extra_files

    def try_bundle(self, output_dir: str, _options: object = None) -> bool:
        shutil.copytree(self.folder, output_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*IGNORED))
        for name, source in self.extra_files.items():
            shutil.copyfile(source, Path(output_dir) / name)
        return True


def function_code(folder: Path, extra_files: dict[str, Path] | None = None) -> lambda_.Code:
    """A function's asset: its `lambdas/<name>` folder, with `extra_files` ({name in the asset: source}) added."""
    if not extra_files:
        return lambda_.Code.from_asset(str(folder), exclude=list(IGNORED))
    digest = hashlib.sha256()
    for path in sorted([*folder.rglob("*.py"), *extra_files.values()]):
        digest.update(path.read_bytes())
    return lambda_.Code.from_asset(
        str(folder),
        asset_hash=digest.hexdigest(),
        asset_hash_type=AssetHashType.CUSTOM,
        bundling=BundlingOptions(image=RUNTIME.bundling_image, local=CopyBundling(folder, extra_files)),
    )


def layer_code(spec: LayerSpec) -> lambda_.Code:
    """The layer's asset. Its hash is the spec's fingerprint, so an unchanged layer is bundled once per cdk.out
    (CDK reuses `asset.<hash>`), and bundling is skipped where the app's context says so (tests)."""
    return lambda_.Code.from_asset(
        str(spec.package_dir.parent),
        asset_hash=spec.fingerprint(),
        asset_hash_type=AssetHashType.CUSTOM,
        bundling=BundlingOptions(image=RUNTIME.bundling_image, local=PipLayerBundling(spec)),
        exclude=list(IGNORED),
    )
