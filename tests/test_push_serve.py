"""`link-fetcher serve` as a real process: the issue's acceptance checks over HTTP, concurrency with the poller,
and hypothesis fuzzing of bodies and headers (never a 5xx, nothing recorded)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from link_fetcher.cdse.products import CdseProduct
from link_fetcher.cli import main
from tests.factories import PUSH_FIXTURE
from tests.fakes.sqs_endpoint import SqsEndpoint
from tests.push_support import (
    PASSWORD,
    USERNAME,
    basic,
    encode,
    granule_rows,
    notification,
    outbox_rows,
    queued_ids,
    race_pushes_and_poller,
    recent_fixture,
    settled_queue,
)

CLI = str(Path(sys.executable).with_name("link-fetcher"))
QUEUE = "push-serve"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def sqs() -> Iterator[SqsEndpoint]:
    with SqsEndpoint() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def server(database_url: str, sqs: SqsEndpoint, tmp_path_factory) -> Iterator[str]:
    """`link-fetcher serve` on a free port, delivering to the fake SQS queue; yields the /events URL."""
    with _serve(database_url, sqs, tmp_path_factory.mktemp("serve")) as url:
        yield url


@contextlib.contextmanager
def _serve(
    database_url: str,
    sqs: SqsEndpoint,
    cwd: Path,
    *options: str,
    environment: dict[str, str] | None = None,
    output: Path | None = None,
) -> Iterator[str]:
    """`serve` with `environment` added; its stdout and stderr go to `output` (when given)."""
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SUBSCRIPTION_", "REDIS_"))},
        "DATABASE_URL": database_url,
        "SUBSCRIPTION_USERNAME": USERNAME,
        "SUBSCRIPTION_PASSWORD": PASSWORD,
        "PLATFORMS": "S2A,S2B",
        "TO_DOWNLOAD_QUEUE_URL": sqs.queue_url(QUEUE),
        "AWS_ENDPOINT_URL": sqs.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        **(environment or {}),
    }
    log = output.open("wb") if output is not None else None
    process = subprocess.Popen(  # cwd: a fresh folder, so no developer .env
        [CLI, "serve", "--port", str(port), *options],
        env=env,
        cwd=cwd,
        stdout=log or subprocess.DEVNULL,
        stderr=log or subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/events"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.post(url, timeout=1).status_code == 401:
                break
        except requests.ConnectionError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            said = output.read_text() if output is not None else process.stderr.read().decode()  # type: ignore[union-attr]
            pytest.fail(f"serve did not start: {said}")
        time.sleep(0.1)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        if log is not None:
            log.close()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def _post(http: requests.Session, url: str, body: bytes, authorization: str | None = None) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    return http.post(url, data=body, headers=headers, timeout=10)


def test_acceptance_checks(server: str, http, engine: Engine, sqs: SqsEndpoint) -> None:
    sqs.fake.queues.pop(QUEUE, None)
    fixture = encode(recent_fixture())
    product_id = PUSH_FIXTURE["value"]["Id"]

    first = _post(http, server, fixture, basic())
    assert (first.status_code, first.content) == (204, b"")
    assert settled_queue(sqs, QUEUE, engine) == [product_id]
    assert _post(http, server, fixture, basic()).status_code == 204
    assert settled_queue(sqs, QUEUE, engine) == [product_id]  # no second message

    for authorization in (basic(password="wrong"), basic(username="someone"), None, "Bearer x"):
        refused = _post(http, server, encode(notification()), authorization)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")

    without_value = {k: v for k, v in PUSH_FIXTURE.items() if k != "value"}
    without_id = {**PUSH_FIXTURE, "value": {k: v for k, v in PUSH_FIXTURE["value"].items() if k != "Id"}}
    for body, field in ((b'{"Subscr', "JSON"), (encode(without_value), "value"), (encode(without_id), "value.Id")):
        bad = _post(http, server, body, basic())
        assert bad.status_code == 400 and bad.headers["Content-Type"] == "application/json"
        assert field in bad.json()["error"]

    two_mib = b"[" + b" " * (2 * 1024 * 1024) + b"]"
    assert _post(http, server, two_mib, basic()).status_code == 413
    chunked = http.post(
        server,
        data=iter([two_mib[i : i + 65536] for i in range(0, len(two_mib), 65536)]),
        headers={"Authorization": basic()},
        timeout=10,
    )
    assert chunked.status_code == 413  # no Content-Length: the body is read up to the limit only

    skipped = [
        notification(sensing=dt.datetime.now(dt.UTC) - dt.timedelta(days=31)),
        notification(tile="01AAA"),
        notification(platform="S2C"),
        notification("modified"),
        notification(product_type="S2MSI2A"),
    ]
    for body in skipped:
        assert _post(http, server, encode(body), basic()).status_code == 204
    assert granule_rows(engine) == [(product_id, "subscription")]
    assert settled_queue(sqs, QUEUE, engine) == [product_id]


def test_sixteen_simultaneous_deliveries_and_the_poller_give_one_row_one_message(
    server: str, engine: Engine, sqs: SqsEndpoint
) -> None:
    sqs.fake.queues.pop(QUEUE, None)
    body = notification()
    product = CdseProduct.model_validate(body["value"])

    def push(start: threading.Barrier) -> int:
        with requests.Session() as session:
            session.post(server, timeout=10)  # connect first, so the 16 requests really overlap
            start.wait()
            return _post(session, server, encode(body), basic()).status_code

    assert race_pushes_and_poller(push, product, engine) == [204] * 16
    [(_, source)] = granule_rows(engine)
    if source == "subscription":  # the endpoint won: serve's background relay sends it, once
        assert settled_queue(sqs, QUEUE, engine) == [product.id]
        assert outbox_rows(engine) == [(product.id, "sqs", "sent")]
    else:  # the poller won: its delivery waits for the poller's relay, and the endpoint sent nothing
        time.sleep(0.5)
        assert queued_ids(sqs, QUEUE) == []
        assert outbox_rows(engine) == [(product.id, "sqs", "pending")]


def test_several_worker_processes_record_and_deliver_once(
    database_url: str, sqs: SqsEndpoint, engine: Engine, tmp_path
) -> None:
    sqs.fake.queues.pop(QUEUE, None)
    bodies = [encode(notification()) for _ in range(20)]
    with _serve(database_url, sqs, tmp_path, "--workers", "2") as url, requests.Session() as http:
        assert [_post(http, url, body, basic()).status_code for body in bodies + bodies] == [204] * 40
        queued = settled_queue(sqs, QUEUE, engine)
    assert sorted(queued) == sorted(json.loads(body)["value"]["Id"] for body in bodies)


# --- hostile and idle clients (issue 26) ---------------------------------------------------------------------

TIMEOUT_S = 2


@pytest.fixture(scope="module")
def watched(database_url: str, sqs: SqsEndpoint, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """`serve` with a short request deadline, its output in a file: (the /events URL, the file)."""
    folder = tmp_path_factory.mktemp("watched")
    environment = {"PUSH_REQUEST_TIMEOUT_SECONDS": str(TIMEOUT_S)}
    with _serve(database_url, sqs, folder, environment=environment, output=folder / "serve.log") as url:
        yield url, folder / "serve.log"


def _lines(log: Path, text: str, at_least: int = 1) -> list[str]:
    """The lines of the server's output holding `text`, once there are `at_least` of them (or 10 s passed)."""
    deadline = time.monotonic() + 10
    while True:
        lines = [line for line in log.read_text().splitlines() if text in line]
        if len(lines) >= at_least or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def _connect(url: str) -> socket.socket:
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _head(length: int) -> bytes:
    return (
        f"POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: {basic()}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


def test_a_client_leaving_mid_body_is_one_info_line(watched, http) -> None:
    url, log = watched
    for _ in range(3):
        with _connect(url) as sock:
            sock.sendall(_head(1000) + b'{"SubscriptionEvent": "crea')
    lines = _lines(log, "client left before sending its whole body", at_least=3)
    assert len(lines) == 3 and all(json.loads(line)["level"] == "INFO" for line in lines)
    assert _post(http, url, encode(notification()), basic()).status_code == 204  # still serving
    output = log.read_text()
    assert "Traceback" not in output and "ClientDisconnect" not in output and '"level":"ERROR"' not in output


@pytest.mark.parametrize("stage", ["nothing", "half_the_headers", "half_the_body"])
def test_a_slow_client_is_answered_408_and_disconnected(watched, http, stage: str) -> None:
    """A byte a second never completes a request within the deadline: the server answers 408 and closes,
    whether the headers or the body are still coming, or nothing came at all."""
    url, log = watched
    before = len(_lines(log, "request not received in time", at_least=0))
    left = len(_lines(log, "client left", at_least=0))
    request = _head(200) + b"{" * 200
    sent = {"nothing": 0, "half_the_headers": 30, "half_the_body": len(_head(200)) + 100}[stage]
    with _connect(url) as sock:
        sock.sendall(request[:sent])
        with contextlib.suppress(OSError):  # the server closes while bytes still arrive
            for byte in request[sent : sent + 3 * TIMEOUT_S]:
                time.sleep(1)
                sock.sendall(bytes([byte]))
        answer = _answer(sock)
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 408 Request Timeout"
    assert json.loads(rest.partition(b"\r\n\r\n")[2]) == {"error": f"request not received within {TIMEOUT_S} s"}
    lines = _lines(log, "request not received in time", at_least=before + 1)
    assert len(lines) == before + 1 and "answered 408" in lines[-1]
    assert len(_lines(log, "client left", at_least=0)) == left  # the deadline's own line says it all
    assert _post(http, url, encode(notification()), basic()).status_code == 204


def test_a_prompt_client_on_a_kept_alive_connection_is_never_cut(watched) -> None:
    url, _ = watched
    with requests.Session() as session:
        for _ in range(3):
            assert _post(session, url, encode(notification()), basic()).status_code == 204
            time.sleep(TIMEOUT_S / 2)  # idle between requests: uvicorn's keep-alive rules, not the deadline


# --- fuzzing ------------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=8,
)


@st.composite
def mutated_fixtures(draw: st.DrawFn) -> dict:
    """The real (old, so filtered-out if valid) notification with one field replaced by junk or removed."""
    body = {**PUSH_FIXTURE, "value": dict(PUSH_FIXTURE["value"])}  # only these two levels are changed
    target, key = body, draw(st.sampled_from(sorted(body)))
    if key == "value" and draw(st.booleans()):
        target, key = body["value"], draw(st.sampled_from(sorted(body["value"])))
    if draw(st.booleans()):
        del target[key]
    else:
        target[key] = draw(json_values)
    return body


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(encode),
    mutated_fixtures().map(encode),
    st.lists(mutated_fixtures(), min_size=0, max_size=3).map(encode),
)
# Printable ASCII without surrounding blanks: what an HTTP client lets through as a header value.
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(str.strip)
authorizations = st.one_of(
    st.none(),
    header_text,
    header_text.map(lambda text: f"Basic {text}"),
    st.tuples(header_text, header_text).map(lambda pair: basic(*pair)),
    st.just(basic(USERNAME, PASSWORD + "x")),
)


FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.mark.slow
def test_fuzzed_bodies_never_5xx_and_record_nothing(server: str, http, engine: Engine) -> None:
    @settings(FUZZ, max_examples=1500)
    @given(body=bodies)
    def post(body: bytes) -> None:
        response = _post(http, server, body, basic())
        assert response.status_code in (204, 400), response.text
        if response.status_code == 400:
            assert response.json()["error"]

    post()
    assert granule_rows(engine) == []


@pytest.mark.slow
def test_fuzzed_headers_are_refused(server: str, http, engine: Engine) -> None:
    recordable = [encode(notification()), encode([notification(), notification(platform="S2B")])]

    @settings(FUZZ, max_examples=600)
    @given(authorization=authorizations, content_type=header_text, body=st.sampled_from(recordable))
    def post(authorization: str | None, content_type: str, body: bytes) -> None:
        headers = {"Content-Type": content_type}
        if authorization is not None:
            headers["Authorization"] = authorization
        response = http.post(server, data=body, headers=headers, timeout=10)
        assert response.status_code == 401

    post()
    assert granule_rows(engine) == []


def test_serve_without_credentials_exits_2(monkeypatch, tmp_path, database_url: str, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # no developer .env
    monkeypatch.setenv("DATABASE_URL", database_url)
    for key in ("SUBSCRIPTION_USERNAME", "SUBSCRIPTION_PASSWORD", "SUBSCRIPTION_SECRET_ARN"):
        monkeypatch.delenv(key, raising=False)
    assert main(["serve", "--port", str(_free_port())]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SUBSCRIPTION_USERNAME" in err
