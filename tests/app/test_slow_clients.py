"""Slow and eager clients against a real uvicorn process: refusals reach clients that write
their whole body first, a body has a deadline, a trickled body holds no large-request slot,
/count streams are capped, and a client that stops reading is cut off."""

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.app.server import connect, read_response, serving
from tests.app.test_hostile import metric

pytestmark = pytest.mark.server
WRITE_TIMEOUTS = 'counter_errors_total{kind="write_timeout"}'


def post_whole(
    base: str, path: str, body: bytes, close: bool = True
) -> tuple[int, dict[str, str], bytes] | str:
    """Write the headers and the whole body before reading anything, as urllib and many
    simple clients do (and ask to close, as urllib does): the answer, or the error seen."""
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "")
    try:
        with socket.socket() as sock:
            # A small send buffer: the body is still being written when the reply comes, as
            # over a real network (on loopback the kernel would take 4 MB of it at once).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
            sock.settimeout(60)
            sock.connect(("127.0.0.1", int(base.rsplit(":", 1)[1])))
            sock.sendall(head.encode() + b"\r\n" + body)
            return read_response(sock)
    except OSError as exc:
        return type(exc).__name__


def test_refusals_before_the_body_reach_clients_that_send_it_whole(
    shipped: Path, tmp_path: Path
) -> None:
    """16 clients send a 3.5 MB body at once (more than the socket buffers hold), one slot:
    the refused ones read 503 and Retry-After, none sees a reset."""
    body = json.dumps({"number": "7" * 3_500_000, "detail": "none"}).encode()
    with (
        serving(shipped, tmp_path, COUNTER_MAX_LARGE_REQUESTS="1") as (_, base, _),
        ThreadPoolExecutor(16) as pool,
    ):
        answers = list(pool.map(lambda _: post_whole(base, "/increment", body), range(16)))
    errors = [a for a in answers if isinstance(a, str)]
    assert errors == []
    statuses = [a[0] for a in answers if not isinstance(a, str)]
    assert 503 in statuses
    assert set(statuses) <= {422, 503}  # the one admitted is past COUNTER_MAX_DIGITS
    for answer in answers:
        assert not isinstance(answer, str)
        if answer[0] == 503:
            assert answer[1]["retry-after"] == "1"


def test_a_connection_past_the_cap_reads_its_503_after_sending_its_body(
    shipped: Path, tmp_path: Path
) -> None:
    """Past COUNTER_MAX_CONNECTIONS, a client that writes a 1 MB body before reading reads the
    503 and its Retry-After, not a reset."""
    body = json.dumps({"numbers": ["7" * 1000] * 1000, "detail": "none"}).encode()
    with serving(shipped, tmp_path, COUNTER_MAX_CONNECTIONS="4") as (_, base, _):
        held = [connect(base) for _ in range(4)]
        time.sleep(0.3)  # the server has taken them
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: post_whole(base, "/increment/batch", body), range(8)))
        for sock in held:
            sock.close()
    assert [a if isinstance(a, str) else a[0] for a in answers] == [503] * 8
    for answer in answers:
        assert not isinstance(answer, str)
        assert answer[1]["retry-after"] == "1"
        assert b"COUNTER_MAX_CONNECTIONS" in answer[2]


def test_a_413_reaches_a_client_that_sends_its_body_whole(shipped: Path, tmp_path: Path) -> None:
    body = b'{"number": "' + b"1" * 3_000_000 + b'"}'
    with serving(shipped, tmp_path, COUNTER_MAX_BODY_BYTES="1000000") as (_, base, _):
        answers = [post_whole(base, "/increment", body) for _ in range(4)]
    for answer in answers:
        assert not isinstance(answer, str), answer
        assert answer[0] == 413
        assert b"COUNTER_MAX_BODY_BYTES" in answer[2]


def test_a_body_that_does_not_arrive_in_time_gets_408(shipped: Path, tmp_path: Path) -> None:
    with serving(shipped, tmp_path, COUNTER_BODY_TIMEOUT_SECONDS="1") as (_, base, _):
        with connect(base, 10) as sock:
            head = "POST /increment HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            sock.sendall(f"{head}Content-Length: 100\r\n\r\n".encode() + b'{"number": ')
            status, headers, body = read_response(sock)
            assert sock.recv(1) == b""  # and closed
        assert status == 408
        assert headers["connection"] == "close"
        assert b"COUNTER_BODY_TIMEOUT_SECONDS" in body


def test_a_trickled_body_holds_no_large_request_slot(shipped: Path, tmp_path: Path) -> None:
    """Two clients trickle large bodies; with one slot, a real large request is answered."""
    settings = {"COUNTER_MAX_LARGE_REQUESTS": "1", "COUNTER_BODY_TIMEOUT_SECONDS": "60"}
    number = "4" * 100_000
    with serving(shipped, tmp_path, **settings) as (_, base, _):
        tricklers = [connect(base, 30) for _ in range(2)]
        head = "POST /increment HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        for sock in tricklers:
            sock.sendall(f"{head}Content-Length: 200000\r\n\r\n".encode() + b'{"number": "')
        time.sleep(0.3)
        body = json.dumps({"number": number, "detail": "none"}).encode()
        answer = post_whole(base, "/increment", body)
        for sock in tricklers:
            sock.close()
    assert not isinstance(answer, str), answer
    assert answer[0] == 200, answer[2][:300]
    assert json.loads(answer[2])["output"] == "4" * 99_999 + "5"


def open_stream(base: str, receive_buffer: int = 0) -> socket.socket:
    sock = socket.socket()
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", int(base.rsplit(":", 1)[1])))
    body = json.dumps({"start": "9" * 3000, "count": 10_000}).encode()
    head = "POST /count HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return sock


def test_streams_past_the_cap_are_refused_with_retry_after(shipped: Path, tmp_path: Path) -> None:
    with serving(shipped, tmp_path, COUNTER_MAX_STREAMS="2") as (_, base, _):
        streams = [open_stream(base) for _ in range(2)]
        for sock in streams:
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
        refused = open_stream(base)
        status, headers, body = read_response(refused)
        assert status == 429
        assert headers["retry-after"] == "1"
        assert b"COUNTER_MAX_STREAMS" in body
        for sock in [*streams, refused]:
            sock.close()
        time.sleep(0.5)
        again = open_stream(base)
        assert again.recv(100).startswith(b"HTTP/1.1 200")  # a slot freed when a stream ended
        again.close()


def test_a_stream_whose_client_stops_reading_is_cut_off(shipped: Path, tmp_path: Path) -> None:
    """A /count client that reads nothing: the server closes the connection once a write has
    made no progress for COUNTER_WRITE_TIMEOUT_SECONDS, long before the count would end."""
    settings = {"COUNTER_WRITE_TIMEOUT_SECONDS": "1", "COUNTER_MAX_COUNT_SECONDS": "600"}
    with serving(shipped, tmp_path, **settings) as (_, base, _):
        sock = open_stream(base, receive_buffer=4096)
        deadline = time.monotonic() + 120
        while not metric(base, WRITE_TIMEOUTS) and time.monotonic() < deadline:
            time.sleep(0.2)  # reads nothing meanwhile
        received = 0
        closed = False
        try:
            while chunk := sock.recv(1 << 16):
                received += len(chunk)
            closed = True
        except ConnectionResetError:
            closed = True
        except TimeoutError:
            pass
        sock.close()
    assert closed
    assert received < 10_000 * 3000  # the whole count is 10 000 lines of 3 000 digits


def v2_large(rows: int, binary: bool) -> bytes:
    numbers = ["9" * 1952] * rows
    body = {
        "inputs": [{"name": "number", "shape": [rows], "datatype": "BYTES", "data": numbers}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": binary}}],
    }
    return json.dumps(body).encode()


def test_a_large_answer_holds_its_slot_until_written(shipped: Path, tmp_path: Path) -> None:
    """A client that sends a large request and never reads its 20 MB answer holds the one
    large-request slot (503 for the next) until the write deadline cuts it off; then the
    next is answered. The slot used to be freed as the answer was made, not sent."""
    settings = {"COUNTER_MAX_LARGE_REQUESTS": "1", "COUNTER_WRITE_TIMEOUT_SECONDS": "8"}
    runs = 'counter_model_run_seconds_count{model="counter"}'
    with serving(shipped, tmp_path, **settings) as (_, base, _):
        before = metric(base, runs)
        body = v2_large(256, binary=True)
        head = "POST /v2/models/counter/infer HTTP/1.1\r\nHost: t\r\n"
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", int(base.rsplit(":", 1)[1])))
        stalled.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        deadline = time.monotonic() + 60
        while metric(base, runs) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)  # the answer is made and handed to the transport by now
        tries = []
        for _ in range(4):  # while the stalled client's answer waits to be written: held
            tries.append(post_whole(base, "/v2/models/counter/infer", v2_large(64, binary=True)))
            time.sleep(0.3)
        while not metric(base, WRITE_TIMEOUTS) and time.monotonic() < deadline:
            time.sleep(0.1)
        then = post_whole(base, "/v2/models/counter/infer", v2_large(64, binary=True))
        stalled.close()
    for first in tries:
        assert not isinstance(first, str), first
        assert first[0] == 503, first[2][:300]
        assert first[1]["retry-after"] == "1"
    assert not isinstance(then, str), then
    assert then[0] == 200, then[2][:300]


def test_a_v2_answer_past_the_answer_limit_is_refused_before_the_run(
    shipped: Path, tmp_path: Path
) -> None:
    with serving(shipped, tmp_path, COUNTER_MAX_ANSWER_BYTES="1000000") as (_, base, _):
        refused = post_whole(base, "/v2/models/counter/infer", v2_large(64, binary=False))
        served = post_whole(base, "/v2/models/counter/infer", v2_large(8, binary=True))
    assert not isinstance(refused, str), refused
    assert refused[0] == 422
    assert "COUNTER_MAX_ANSWER_BYTES" in json.loads(refused[2])["error"]
    assert not isinstance(served, str), served
    assert served[0] == 200
