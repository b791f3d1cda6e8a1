"""The SQS-compatible endpoint the benchmarks send to (tests/fakes/sqs_endpoint.py), alone, with a delay per call.

`--latency-ms N` adds N ms to every reply, as a queue across a network would.
Usage: python -m benchmarks.sqs_endpoint [--port 9324] [--latency-ms 0]
"""

from tests.fakes.sqs_endpoint import main

if __name__ == "__main__":
    main()
