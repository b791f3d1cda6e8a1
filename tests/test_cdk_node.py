"""The CDK's toolchain runs on a supported Node: the project's own (package.json), not the system's."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cdk.link_fetcher_cdk.node import MINIMUM_NODE_MAJOR, NODE_BIN, jsii_node, node_major

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[1]


def test_jsii_runs_on_the_projects_node_of_a_supported_release() -> None:
    node = jsii_node()
    assert node is not None, "no node on PATH: run `npm ci` (make synth does) to install the project's Node"
    assert Path(node).parent == NODE_BIN, f"jsii would run {node}, not the project's Node in {NODE_BIN}"
    assert node_major(node) >= MINIMUM_NODE_MAJOR


def test_make_runs_the_cdk_cli_with_the_projects_node_first_on_path() -> None:
    """The CLI's launcher (`#!/usr/bin/env node`) and the app it starts take `node` from PATH."""
    assert (NODE_BIN / "cdk").read_text().startswith("#!/usr/bin/env node")
    planned = subprocess.run(["make", "-n", "synth"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    (command,) = [line for line in planned.splitlines() if " synth " in line and "cdk" in line]
    assert f'PATH="{NODE_BIN}:$PATH"' in command and command.split(" synth ")[0].endswith(" cdk")


def test_the_pinned_node_is_a_supported_release_and_nothing_silences_an_end_of_life_warning() -> None:
    package = json.loads((ROOT / "package.json").read_text())
    assert int(package["devDependencies"]["node"].split(".")[0]) >= MINIMUM_NODE_MAJOR
    tracked = [*ROOT.glob("Makefile"), *ROOT.glob(".ci/*"), *ROOT.glob("scripts/*")]
    for top in ("cdk", "layers", "lambdas", "tests", "benchmarks", "twin"):
        tracked += (ROOT / top).rglob("*.py")
    silenced = "JSII_SILENCE_WARNING_" + "END_OF_LIFE"
    assert [path for path in tracked if silenced in path.read_text()] == []
