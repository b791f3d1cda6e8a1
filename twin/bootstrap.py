"""The runtime inside one twin container (a process per function), run as Lambda's Python runtime runs a function:
`python3.13 -I -S -B bootstrap.py TASK OPT RUNTIME REQUEST_FD REPLY_FD` with the function's environment.

Standard library only: it runs with no site-packages, like /var/runtime's bootstrap. INIT imports the handler
(`_HANDLER`) once from the function's asset, then the layers, then the runtime's boto3, in Lambda's order; each
request is one JSON line on REQUEST_FD ({"event", "deadline", "scale", "request_id"}) and its reply one JSON line on
REPLY_FD ({"result"} or {"error"}), after a first line {"ready": true} that ends INIT. Whatever the handler prints
(logs, embedded metrics) goes to stdout as on Lambda.

The container's clock runs at the stack's pace: `time.sleep` (urllib3's and botocore's backoffs, Retry-After) is
scaled like the deadline, so a wait costs the same share of a function's timeout as on Lambda.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, SupportsIndex

_REAL_SLEEP = time.sleep


class LambdaContext:
    """What Lambda passes as `context`. The remaining time is in the stack's time: the twin's deadline (monotonic
    seconds) divided by its time scale, so a handler's stop margin means the same fraction of its timeout."""

    def __init__(self, request: dict[str, Any]) -> None:
        self._deadline = float(request["deadline"])
        self._scale = float(request["scale"])
        self.aws_request_id = request["request_id"]
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = request.get("function_arn", "")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) / self._scale * 1000))


def _sleep_in_stack_time(scale: float) -> Callable[[float | SupportsIndex], None]:
    def sleep(seconds: float | SupportsIndex) -> None:
        _REAL_SLEEP(float(seconds) * scale)

    return sleep


def _error(exc: BaseException) -> dict[str, Any]:
    return {
        "errorType": type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(exc)[1:],
    }


def main() -> None:
    task, opt, runtime = sys.argv[1:4]
    requests = os.fdopen(int(sys.argv[4]), "rb")
    replies = os.fdopen(int(sys.argv[5]), "wb")
    sys.path[:0] = [task, opt, runtime]
    os.chdir(task)
    module_name, _, function_name = os.environ["_HANDLER"].rpartition(".")
    handler = init_error = None
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
    except Exception as exc:  # noqa: BLE001 - Lambda reports an INIT failure on every invocation of the sandbox
        init_error = {**_error(exc), "errorType": f"Runtime.ImportModuleError: {type(exc).__name__}"}
    # INIT is over: the twin starts an invocation's clock only now, as Lambda does.
    replies.write(b'{"ready": true}\n')
    replies.flush()
    for line in requests:
        request = json.loads(line)
        time.sleep = _sleep_in_stack_time(float(request["scale"]))
        if init_error is not None:
            reply: dict[str, Any] = {"error": init_error}
        else:
            try:
                result = handler(request["event"], LambdaContext(request))  # type: ignore[misc]
                reply = {"result": json.loads(json.dumps(result))}
            except Exception as exc:  # noqa: BLE001 - the handler's error is the invocation's FunctionError
                reply = {"error": _error(exc)}
        sys.stdout.flush()
        sys.stderr.flush()
        replies.write(json.dumps(reply).encode() + b"\n")
        replies.flush()


if __name__ == "__main__":
    main()
