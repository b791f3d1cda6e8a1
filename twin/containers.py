"""Lambda's execution environments, played as one warm process per function.

A container is a `python3.13 -I -S -B twin/bootstrap.py` process over the function's bundle from `cdk.out/`
(the asset as /var/task, the layers merged into one /opt/python in the template's order, boto3 as the runtime
provides it) with the function's environment. It lives across invocations, so it keeps what a Lambda container
keeps (module imports, settings, the engine's pool, clients). It is killed, and the next invocation starts a new
one (a cold start), when an invocation outlives its timeout or a fault says so.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3

from cdk.link_fetcher_cdk.python_runtime import runtime_python
from twin.template import ACCOUNT, REGION, FunctionSpec

BOOTSTRAP = Path(__file__).with_name("bootstrap.py")
# What Lambda's Python runtime puts beside the function: boto3 and what it needs (/var/runtime).
# Lambda gives INIT (the handler's imports) up to 10 s apart from the invocation's timeout; here, under load, more.
INIT_TIMEOUT_SECONDS = 120.0
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py", "urllib3")


class FunctionError(RuntimeError):
    """An invocation ended in an error (the handler raised, INIT failed, a timeout, a kill)."""

    def __init__(self, function: str, error: Mapping[str, Any]) -> None:
        super().__init__(f"{function}: {error.get('errorType')}: {error.get('errorMessage')}")
        self.function = function
        self.error = dict(error)


@dataclasses.dataclass
class Invocation:
    function: str
    result: Any = None
    error: dict[str, Any] | None = None
    seconds: float = 0.0  # wall time of the invocation here
    cold: bool = False


@dataclasses.dataclass
class Fault:
    kind: str  # "timeout": the context runs out after `seconds`; "kill": the process is killed after `seconds`
    seconds: float


def runtime_dir(target: Path) -> Path:
    """A /var/runtime: links to this interpreter's boto3 and its dependencies (the versions Pipfile.lock pins)."""
    target.mkdir(parents=True, exist_ok=True)
    site = Path(boto3.__file__).parents[1]
    for name in RUNTIME_PACKAGES:
        if (site / name).exists() and not (target / name).exists():
            (target / name).symlink_to(site / name)
    return target


def merge_layers(layers: tuple[Path, ...], target: Path) -> Path:
    """/opt as Lambda extracts the layers: in order, a later layer's files over an earlier one's."""
    if not target.exists():
        for layer in layers:
            shutil.copytree(layer, target, dirs_exist_ok=True, symlinks=True)
    return target / "python"


class Container:
    """One function's warm process; `invoke` runs one event through it (one at a time)."""

    def __init__(
        self, spec: FunctionSpec, *, opt: Path, runtime: Path, environment: Mapping[str, str], log: Path, scale: float
    ) -> None:
        self.spec = spec
        self.opt, self.runtime, self.environment = opt, runtime, dict(environment)
        self.log, self.scale = log, scale
        self.arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{spec.logical_id}"
        self.lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None
        self.faults: list[Fault] = []
        self.starts = 0

    def _start(self) -> None:
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        assert self.spec.asset is not None
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our interpreter, the bundle's paths
                [runtime_python(self.spec.python_version), "-I", "-S", "-B", str(BOOTSTRAP), str(self.spec.asset),
                 str(self.opt), str(self.runtime), str(request_read), str(reply_write)],
                env=self.environment, cwd=self.spec.asset, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(request_read, reply_write),
            )  # fmt: skip
        os.close(request_read)
        os.close(reply_write)
        self._requests = os.fdopen(request_write, "wb")
        self._replies = os.fdopen(reply_read, "rb")
        self.starts += 1
        ready, _, _ = select.select([self._replies], [], [], INIT_TIMEOUT_SECONDS)
        if not ready or not self._replies.readline():
            self.stop()
            raise RuntimeError(f"{self.spec.name}: the container did not finish INIT (see {self.log})")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self._requests.close()
            self._replies.close()
            self.process = None

    def invoke(self, event: Any) -> Invocation:
        with self.lock:
            cold = self.process is None or self.process.poll() is not None
            if cold:
                self.stop()
                self._start()
            fault = self.faults.pop(0) if self.faults else None
            started = time.monotonic()
            outcome = self._exchange(event, started, fault)
            outcome.seconds, outcome.cold = time.monotonic() - started, cold
            return outcome

    def _exchange(self, event: Any, started: float, fault: Fault | None) -> Invocation:
        """One request and its reply. A timeout fault shortens this invocation's timeout (the context says so, and
        the sandbox is stopped at it); a kill fault kills the process that long into the invocation."""
        timeout = self.spec.timeout_seconds if fault is None or fault.kind != "timeout" else fault.seconds
        deadline = started + timeout * self.scale
        kill_at = started + fault.seconds * self.scale if fault and fault.kind == "kill" else deadline
        request = {"event": event, "deadline": deadline, "scale": self.scale, "request_id": str(uuid.uuid4()),
                   "function_arn": self.arn}  # fmt: skip
        self._requests.write(json.dumps(request).encode() + b"\n")
        self._requests.flush()
        ready, _, _ = select.select([self._replies], [], [], max(0.0, kill_at - time.monotonic()))
        line = self._replies.readline() if ready else b""
        if line:
            reply = json.loads(line)
            return Invocation(self.spec.name, result=reply.get("result"), error=reply.get("error"))
        self.stop()
        if ready or kill_at < deadline:  # the process exited, or was killed before its timeout
            error = {"errorType": "Runtime.ExitError", "errorMessage": "Runtime exited with error: signal: killed"}
        else:
            error = {"errorType": "Sandbox.Timedout", "errorMessage": f"Task timed out after {timeout:.2f} seconds"}
        return Invocation(self.spec.name, error=error)
