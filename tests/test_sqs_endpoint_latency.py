"""The benchmarks' SQS endpoint run alone (`python -m benchmarks.sqs_endpoint`): each call answered after
`--latency-ms`, as a queue across a network would; bad values refused."""

from __future__ import annotations

import subprocess
import sys
import time

from benchmarks.common import sqs_client, sqs_endpoint_process
from tests.fakes.sqs_endpoint import ACCOUNT


def _batch_seconds(latency_ms: float) -> float:
    with sqs_endpoint_process(latency_ms) as url:
        client = sqs_client(url)
        queue_url = f"{url}/{ACCOUNT}/to-download"
        client.send_message_batch(QueueUrl=queue_url, Entries=[{"Id": "0", "MessageBody": "{}"}])  # connected
        started = time.perf_counter()
        response = client.send_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": str(i), "MessageBody": f'{{"n": {i}}}'} for i in range(10)]
        )
        seconds = time.perf_counter() - started
    assert sorted(int(entry["Id"]) for entry in response["Successful"]) == list(range(10))
    return seconds


def test_every_call_waits_the_latency_asked() -> None:
    assert _batch_seconds(60) >= 0.060


def test_a_negative_latency_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.sqs_endpoint", "--port", "0", "--latency-ms", "-5"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "--latency-ms cannot be negative" in done.stderr
