"""A minimal SQS-compatible endpoint (AWS JSON 1.0 protocol) for benchmarks and fault-injection tests.

moto's SQS costs ~10 ms a message, so it would measure moto. This serves the calls link-fetcher and its
consumers make — CreateQueue, GetQueueUrl, GetQueueAttributes, SendMessage(Batch), ReceiveMessage,
DeleteMessage(Batch) — from memory, and can refuse chosen entries or be stopped to play "queue down".

`latency` (seconds, `--latency-ms` when run alone) delays every reply, as a remote queue's round trip would;
concurrent calls wait concurrently (a thread per connection).

Run alone: python -m benchmarks.sqs_endpoint --port 9324 [--latency-ms 5]
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ACCOUNT = "000000000000"


class FakeSqs:
    """Queues in memory. `refuse` decides per entry body whether SendMessageBatch reports it failed."""

    def __init__(self) -> None:
        self.queues: dict[str, collections.deque[dict[str, Any]]] = {}
        self.in_flight: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.refuse: Callable[[dict[str, Any]], bool] = lambda entry: False
        self.batch_calls = 0
        self.down = False  # set by SqsEndpoint.stop(): open keep-alive connections are dropped too
        self.latency = 0.0  # seconds added to every reply

    def _queue(self, url: str) -> collections.deque[dict[str, Any]]:
        name = url.rstrip("/").rsplit("/", 1)[-1]
        return self.queues.setdefault(name, collections.deque())

    def messages(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.queues.get(name, ()))

    def handle(self, action: str, request: dict[str, Any], host: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if action in ("CreateQueue", "GetQueueUrl"):
                self.queues.setdefault(request["QueueName"], collections.deque())
                return 200, {"QueueUrl": f"http://{host}/{ACCOUNT}/{request['QueueName']}"}
            if action == "GetQueueAttributes":
                queue = self._queue(request["QueueUrl"])
                return 200, {"Attributes": {"ApproximateNumberOfMessages": str(len(queue))}}
            if action == "SendMessage":
                request = {**request, "Id": "single"}
                return 200, self._accept(self._queue(request["QueueUrl"]), request)
            if action == "SendMessageBatch":
                self.batch_calls += 1
                queue = self._queue(request["QueueUrl"])
                entries = request.get("Entries", [])
                if not 1 <= len(entries) <= 10:
                    return 400, _error("AWS.SimpleQueueService.TooManyEntriesInBatchRequest", "1 to 10 entries")
                successful, failed = [], []
                for entry in entries:
                    if self.refuse(entry):
                        failed.append(
                            {
                                "Id": entry["Id"],
                                "SenderFault": False,
                                "Code": "InternalError",
                                "Message": "refused by the fake",
                            }
                        )
                    else:
                        successful.append(self._accept(queue, entry))
                return 200, {"Successful": successful, "Failed": failed}
            if action == "ReceiveMessage":
                queue = self._queue(request["QueueUrl"])
                count = min(int(request.get("MaxNumberOfMessages", 1)), 10)
                taken = [queue.popleft() for _ in range(min(count, len(queue)))]
                for message in taken:
                    self.in_flight[message["ReceiptHandle"]] = message
                return 200, {"Messages": taken}
            if action in ("DeleteMessage", "DeleteMessageBatch"):
                entries = request.get("Entries") or [{"Id": "single", "ReceiptHandle": request["ReceiptHandle"]}]
                for entry in entries:
                    self.in_flight.pop(entry["ReceiptHandle"], None)
                return 200, {"Successful": [{"Id": e["Id"]} for e in entries], "Failed": []}
            return 400, _error("InvalidAction", f"{action} is not supported by the fake")

    @staticmethod
    def _accept(queue: collections.deque[dict[str, Any]], entry: dict[str, Any]) -> dict[str, Any]:
        body = entry["MessageBody"]
        message_id = str(uuid.uuid4())
        md5 = hashlib.md5(body.encode()).hexdigest()  # noqa: S324 - SQS's own body digest
        attributes = {k: entry[k] for k in ("MessageGroupId", "MessageDeduplicationId") if k in entry}
        queue.append(
            {
                "MessageId": message_id,
                "ReceiptHandle": message_id,
                "Body": body,
                "MD5OfBody": md5,
                "Attributes": attributes,
            }
        )
        return {"Id": entry["Id"], "MessageId": message_id, "MD5OfMessageBody": md5}


def _error(code: str, message: str) -> dict[str, str]:
    return {"__type": code, "message": message}


def _handler(fake: FakeSqs) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else every reply waits for the client's delayed ACK (~40 ms)

        def do_POST(self) -> None:
            if fake.down:
                self.close_connection = True  # hang up without a reply, like a server that went away
                return
            length = int(self.headers.get("Content-Length", 0))
            request = json.loads(self.rfile.read(length) or b"{}")
            action = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
            status, payload = fake.handle(action, request, self.headers.get("Host", "localhost"))
            body = json.dumps(payload).encode()
            if fake.latency:
                time.sleep(fake.latency)
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


class SqsEndpoint:
    """The fake on a background thread: `with SqsEndpoint() as endpoint: endpoint.url`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0) -> None:
        self.fake = FakeSqs()
        self.fake.latency = latency
        self.server = ThreadingHTTPServer((host, port), _handler(self.fake))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def queue_url(self, name: str) -> str:
        return f"{self.url}/{ACCOUNT}/{name}"

    def __enter__(self) -> SqsEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.fake.down = True
        self.server.shutdown()
        self.server.server_close()


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the fake alone until killed (`python -m benchmarks.sqs_endpoint`)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9324)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay added to every reply")
    args = parser.parse_args(argv)
    if args.latency_ms < 0:
        parser.error("--latency-ms cannot be negative")
    endpoint = SqsEndpoint(port=args.port, latency=args.latency_ms / 1000)
    print(f"fake SQS on {endpoint.url}, {args.latency_ms:g} ms per call", flush=True)
    endpoint.server.serve_forever()


if __name__ == "__main__":
    main()
