"""`trainserve api` as it starts by default (service/server.py's hybrid worker): requests
one at a time in each process's main thread, long requests (event streams, big bodies)
in threads beside them, and gunicorn's own errors as problem+json."""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests

from tests.integration.live_api import LiveApi, prepare, running_api

PREDICT = {"records": [{"x1": 1.0, "x2": 0.5, "colour": "red", "flag": True}]}


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> LiveApi:
    home = tmp_path_factory.mktemp("api")
    url, made = prepare(home)
    # One process with two threads for long requests: whatever is open in the threads,
    # the main thread must go on answering.
    env = {"HOME": str(home)}  # where gunicorn >= 25 would open its control socket
    with running_api(home, url, ("--workers", "1", "--threads", "2"), env) as (port, log):
        yield LiveApi(f"http://127.0.0.1:{port}", port, url, made, log)


def test_no_gunicorn_control_socket_is_opened(live):
    """gunicorn's control socket (~/.gunicorn/gunicorn.ctl) would be one path shared by
    every server of the user, and fail on a read-only home: ``api`` turns it off."""
    assert requests.get(f"{live.url}/healthz", timeout=5).status_code == 200
    home = live.log.parent
    assert not (home / ".gunicorn").exists()
    assert "control" not in live.log.read_text().lower()


def _open(live: LiveApi, head: str, body: bytes = b"") -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", live.port), timeout=30)
    conn.sendall(head.encode() + b"\r\n" + body)
    return conn


def _predict_ms(live: LiveApi) -> float:
    started = time.monotonic()
    response = requests.post(
        f"{live.url}/v1/models/iris/predict", json=PREDICT, headers=live.headers(), timeout=10
    )
    assert response.status_code == 200, response.text
    return (time.monotonic() - started) * 1000


def test_predict_is_served_while_streams_and_an_upload_hold_threads(live):
    auth = f"Authorization: Bearer {live.keys['all']}\r\n"
    dataset = requests.get(f"{live.url}/v1/datasets", headers=live.headers()).json()[0]["id"]
    job = requests.post(  # queued for good: no worker runs here, so its stream stays open
        f"{live.url}/v1/jobs",
        json={"dataset_id": dataset, "target": "species", "model_name": "queued"},
        headers=live.headers(),
    ).json()["id"]
    stream = _open(live, f"GET /v1/jobs/{job}/events HTTP/1.1\r\nHost: x\r\n{auth}")
    # An upload that has sent half of its 2 MiB body and pauses.
    half = b"a,y\n" + b"1,p\n" * (1 << 18)
    rest = b"1,p\n" * ((1 << 18) + 1)  # rows only (the header again would be a bad number)
    upload = _open(
        live,
        "POST /v1/datasets?name=slow HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
        f"Content-Length: {2 * len(half)}\r\n{auth}",
        half,
    )
    try:  # closed even when an assertion fails (a leaked socket fails a later test)
        time.sleep(0.5)
        times = [_predict_ms(live) for _ in range(10)]
        assert max(times) < 2000, times  # answered, not queued behind the threads
        assert stream.recv(1 << 16).startswith(b"HTTP/1.1 200")
        upload.sendall(rest)  # the upload completes in its thread
        upload.settimeout(60)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += upload.recv(1 << 16)
        assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
    finally:
        stream.close()
        upload.close()


@pytest.mark.parametrize(
    "request_line, headers, status",
    [
        ("GET /v1/sweeps?q=" + "a" * 9000 + " HTTP/1.1", "", 414),
        # schemathesis's: 1,001 non-ASCII characters, percent-encoded (6 KB).
        ("GET /v1/models/iris/compare?versions=" + "%C3%A7" * 1001 + " HTTP/1.1", "", 414),
        ("GET /v1/sweeps HTTP/1.1", "X-Big: " + "a" * 9000 + "\r\n", 431),
        ("GET /v1/sweeps HTTP/1.1", "".join(f"X-H{i}: a\r\n" for i in range(120)), 431),
        ("GARBAGE", "", 400),
        ("GET / HTTP/9.9", "", 400),
        ("G\x7fT / HTTP/1.1", "", 400),
        ("GET /healthz HTTP/1.1", "Content-Length: abc\r\n", 400),
        ("GET /healthz HTTP/1.1", "Bad Header: x\r\n", 400),
        ("POST /v1/datasets HTTP/1.1", "Transfer-Encoding: gzip\r\n", 400),
    ],
    ids=[
        "uri-too-long",
        "compare-versions-too-long",
        "header-too-large",
        "too-many-headers",
        "garbage-request-line",
        "http-9.9",
        "control-in-method",
        "bad-content-length",
        "space-in-header-name",
        "transfer-encoding-without-chunked",
    ],
)
def test_the_servers_own_errors_are_problem_json(live, request_line, headers, status):
    answer = b""
    with _open(live, f"{request_line}\r\nHost: x\r\n{headers}") as conn:
        while chunk := conn.recv(1 << 16):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status}".encode()), answer[:300]
    assert b"Content-Type: application/problem+json" in head
    problem = json.loads(body)
    assert problem["status"] == status and problem["title"] and problem["detail"]
    assert _predict_ms(live) < 5000  # the worker lives on


def _read_answer(conn: socket.socket, buffered: bytes = b"") -> tuple[bytes, bytes, bytes]:
    """One HTTP/1.1 answer with a Content-Length from ``conn``: (head, body, bytes after)."""
    data = buffered
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(1 << 16)
        assert chunk, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
    )
    while len(rest) < length:
        chunk = conn.recv(1 << 16)
        assert chunk, rest
        rest += chunk
    return head, rest[:length], rest[length:]


def _predict_request(live: LiveApi) -> bytes:
    body = json.dumps(PREDICT).encode()
    return (
        "POST /v1/models/iris/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {live.keys['all']}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def test_a_connection_is_kept_alive_for_short_requests_pipelined_or_not(live):
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as conn:
        for _ in range(3):  # one after another on the same connection
            conn.sendall(_predict_request(live))
            head, body, rest = _read_answer(conn)
            assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" not in head
            assert json.loads(body)["predictions"] and rest == b""
        idle = socket.create_connection(("127.0.0.1", live.port), timeout=30)
        try:  # an idle kept-alive connection does not hold the one-process worker
            idle.sendall(_predict_request(live))
            assert _read_answer(idle)[0].startswith(b"HTTP/1.1 200")
            assert _predict_ms(live) < 2000
            conn.sendall(_predict_request(live) * 2)  # pipelined: both answered, in order
            head, _, rest = _read_answer(conn)
            head2, _, rest = _read_answer(conn, rest)
            assert head.startswith(b"HTTP/1.1 200") and head2.startswith(b"HTTP/1.1 200")
            # Idle past gunicorn's keepalive (2 s): the server closes the connection.
            time.sleep(3)
            assert idle.recv(1) == b""
        finally:
            idle.close()


def test_a_long_request_on_a_kept_alive_connection_closes_it_after(live):
    auth = f"Authorization: Bearer {live.keys['all']}\r\n"
    table = b"a,y\n" + b"1,p\n2,q\n" * (1 << 17)  # over 1 MiB: a long request, in a thread
    with socket.create_connection(("127.0.0.1", live.port), timeout=60) as conn:
        conn.sendall(_predict_request(live))
        assert _read_answer(conn)[0].startswith(b"HTTP/1.1 200")
        conn.sendall(
            (
                "POST /v1/datasets?name=kept HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
                f"Content-Length: {len(table)}\r\n{auth}\r\n"
            ).encode()
            + table
        )
        head, _, rest = _read_answer(conn)
        assert head.startswith(b"HTTP/1.1 201") and b"Connection: close" in head, head
        assert rest == b"" and conn.recv(1) == b""


def test_an_upload_whose_client_goes_away_mid_body_stores_nothing(live):
    """The body is read from the socket itself (service.server.RawBody): a client that
    closes its connection halfway fails the upload (400, as werkzeug's stream would),
    and the threads serve whole uploads after it."""
    auth = f"Authorization: Bearer {live.keys['all']}\r\n"
    table = b"a,y\n" + b"1,p\n2,q\n" * (1 << 18)  # 4 MiB: a long request, in a thread
    head = (
        "POST /v1/datasets?name={} HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
        f"Content-Length: {len(table)}\r\n{auth}"
    )
    upload = _open(live, head.format("cut"), table[: len(table) // 2])
    time.sleep(0.3)  # read up to what was sent: the thread waits on the socket
    upload.close()
    for name in ("whole", "whole2"):
        with _open(live, head.format(name), table) as conn:
            answer = _read_answer(conn)[0]
            assert answer.startswith(b"HTTP/1.1 201"), answer
    names = {
        d["name"] for d in requests.get(f"{live.url}/v1/datasets", headers=live.headers()).json()
    }
    assert {"whole", "whole2"} <= names and "cut" not in names
    log = live.log.read_text()
    assert '"POST /v1/datasets?name=cut HTTP/1.1" 400' in log and "Traceback" not in log
