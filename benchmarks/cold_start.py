"""Cold start: each handler's import time from its bundle (asset + layers, built as `cdk synth` builds them) in a
clean interpreter of the runtime's Python, as a ratio to `import boto3` in the same setting and run.

Each import is a fresh process; the figure is the median of `--rounds`, rounds interleaved so that a slow moment
of the machine hits every function alike. Goal: push (link_subscription) and fetch (link_fetcher) ≤ 2.5 x boto3.
Also lists the heavy packages each handler loads (alembic, pydantic, sqlalchemy, …) to show what an import costs.
Nothing is left for the first request to import: the secrets reader (powertools' parameters, boto3) and the
database driver (psycopg) are loaded in INIT, so a handler cannot look faster by deferring imports Lambda would
then run on the function's share of a CPU. What the first request still does is set-up, not imports: reading the
settings and the database secret, creating the engine and the sink clients.
Usage: python -m benchmarks.cold_start [--rounds 7] [--tree DIR]  (DIR keeps the built tree for a re-run)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from cdk.link_fetcher_cdk.node import use_project_node

use_project_node()  # before aws_cdk is imported: jsii starts the Node it finds on PATH then

from cdk.link_fetcher_cdk.config import PROJECT_ROOT  # noqa: E402
from cdk.link_fetcher_cdk.local_lambda import LambdaTree, build_tree  # noqa: E402

GOAL = 2.5
GOAL_FUNCTIONS = ("link_subscription", "link_fetcher")
WATCHED_PACKAGES = ("alembic", "sqlalchemy", "pydantic", "psycopg", "requests", "redis", "pystac_client", "blake3")


def measure(tree: LambdaTree, rounds: int) -> None:
    functions = sorted(tree.tasks)
    handler_seconds: dict[str, list[float]] = {name: [] for name in functions}
    boto3_seconds: list[float] = []
    loaded: dict[str, list[str]] = {}
    for _ in range(rounds):
        boto3_seconds.append(tree.run_import(functions[0], "boto3").seconds)
        for name in functions:
            imported = tree.run_import(name)
            handler_seconds[name].append(imported.seconds)
            loaded[name] = [package for package in WATCHED_PACKAGES if package in imported.modules]
    boto3 = statistics.median(boto3_seconds)
    print(f"import boto3: {boto3 * 1000:.0f} ms median, {min(boto3_seconds) * 1000:.0f} ms best of {rounds}")
    print("medians (best of the rounds in brackets: the least disturbed by other load)")
    print(f"{'function':<18} {'import':>15} {'x boto3':>14}  {'goal':<12}  loads")
    for name in functions:
        seconds = statistics.median(handler_seconds[name])
        ratio = seconds / boto3
        best_ratio = min(handler_seconds[name]) / min(boto3_seconds)
        goal = (f"≤ {GOAL} " + ("met" if ratio <= GOAL else "MISSED")) if name in GOAL_FUNCTIONS else ""
        print(
            f"{name:<18} {seconds * 1000:>5.0f} ({min(handler_seconds[name]) * 1000:>4.0f}) ms "
            f"{ratio:>5.2f}x ({best_ratio:.2f}x)  {goal:<12}  {', '.join(loaded[name])}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tree", type=Path, help="build the bundle tree here (reused if it exists)")
    args = parser.parse_args()
    if args.tree is not None:
        tree = reuse_or_build(args.tree)
        measure(tree, args.rounds)
        return
    with tempfile.TemporaryDirectory() as scratch:
        measure(build_tree(PROJECT_ROOT, Path(scratch)), args.rounds)


def reuse_or_build(target: Path) -> LambdaTree:
    if not (target / "opt").is_dir():
        return build_tree(PROJECT_ROOT, target)
    tasks = {path.name: path for path in sorted((target / "task").iterdir())}
    return LambdaTree(root=target, layers=target / "opt" / "python", runtime=target / "runtime", tasks=tasks)


if __name__ == "__main__":
    main()
