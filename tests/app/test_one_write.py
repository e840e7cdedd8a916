"""One send per response: the transport holds a response's head for its body's first write,
and never loses, reorders or withholds a byte."""

import json
import socket
import time
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.http.one_write import COALESCE_BYTES, OneWrite
from core.codec import add_one
from tests.app.server import connect, read_response, start_server, stop_server

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class Recorder:
    """A transport that records what is written."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> str:
        return f"info {name}"


def one_write() -> tuple[OneWrite, Recorder]:
    recorder = Recorder()
    return OneWrite(cast(Any, recorder)), recorder


def test_a_small_answer_leaves_in_one_write() -> None:
    transport, sent = one_write()
    transport.hold = True
    transport.write(HEAD)
    assert sent.writes == []
    transport.write(b"{}")
    assert sent.writes == [HEAD + b"{}"]


def test_100_continue_is_never_held() -> None:
    transport, sent = one_write()
    transport.hold = True
    transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert sent.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    transport.write(HEAD)  # the real head is still held for its body
    transport.write(b"{}")
    assert sent.writes[1:] == [HEAD + b"{}"]


def test_a_large_body_is_not_copied_onto_its_head() -> None:
    transport, sent = one_write()
    transport.hold = True
    transport.write(HEAD)
    body = b"7" * (COALESCE_BYTES + 1)
    transport.write(body)
    assert sent.writes == [HEAD, body]


def test_a_head_without_a_body_write_goes_at_the_end_or_on_close() -> None:
    transport, sent = one_write()
    transport.hold = True
    transport.write(HEAD)
    transport.flush()  # what the protocol does when the response completes (HEAD requests)
    assert sent.writes == [HEAD]
    transport.hold = True
    transport.write(HEAD)
    transport.close()
    assert sent.writes == [HEAD, HEAD]
    assert sent.closed
    assert transport.is_closing()
    assert transport.get_extra_info("peername") == "info peername"


@given(
    st.lists(
        st.one_of(
            st.just("hold"),
            st.just("flush"),
            st.binary(min_size=1, max_size=40),
            st.just(b"HTTP/1.1 100 Continue\r\n\r\n"),
        ),
        max_size=30,
    )
)
def test_bytes_go_out_in_order_and_nothing_stays_after_a_flush(ops: list[str | bytes]) -> None:
    """Any interleaving of heads held, writes and flushes (pipelined requests included)."""
    transport, sent = one_write()
    written = b""
    for op in ops:
        if op == "hold":
            transport.hold = True
        elif op == "flush":
            transport.flush()
        else:
            assert isinstance(op, bytes)
            transport.write(op)
            written += op
        assert written.startswith(b"".join(sent.writes))
    transport.flush()
    assert b"".join(sent.writes) == written


def read_pipelined(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """`count` responses off one connection, in order: one recv may carry several of them
    (read_response would keep the rest as the first one's body)."""
    data = b""
    answers: list[tuple[int, dict[str, str], bytes]] = []
    while len(answers) < count:
        head, found, rest = data.partition(b"\r\n\r\n")
        if found:
            status_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in lines)}
            length = int(headers.get("content-length", "0"))
            if len(rest) >= length:
                answers.append((int(status_line.split()[1]), headers, rest[:length]))
                data = rest[length:]
                continue
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {len(answers)} of {count} responses")
        data += chunk
    assert not data, f"more bytes than {count} responses: {data[:200]!r}"
    return answers


@pytest.mark.server
def test_pipelined_and_expect_continue_requests_get_every_answer_and_are_counted(
    shipped: Path, tmp_path: Path
) -> None:
    server, base = start_server(shipped, tmp_path / "server.log")
    try:
        body = json.dumps({"number": "1299", "detail": "none"}).encode()
        post = (
            b"POST /increment HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        get = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
        with connect(base) as sock:
            sock.sendall(post + get + post)  # three requests in one send
            time.sleep(0.2)  # let all three answers arrive: one read then takes them together
            answers = read_pipelined(sock, 3)
        assert [status for status, _, _ in answers] == [200, 200, 200]
        assert json.loads(answers[0][2])["output"] == add_one("1299")
        assert json.loads(answers[1][2]) == {"status": "ok"}
        assert json.loads(answers[2][2])["output"] == add_one("1299")

        with connect(base) as sock:
            head, _, rest = post.partition(b"\r\n\r\n")
            sock.sendall(head + b"\r\nExpect: 100-continue\r\n\r\n")
            sock.settimeout(5)
            assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue"), "not sent at once"
            sock.sendall(rest)
            status, _, answer = read_response(sock)
        assert status == 200
        assert json.loads(answer)["output"] == add_one("1299")

        with connect(base) as sock:  # a client that leaves with its request unanswered
            sock.sendall(post[:-3])
        # every request above was answered or its connection lost: only /metrics is in
        # progress (once the server has seen the last connection go)
        seen = []
        for _ in range(50):
            with connect(base) as sock:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
                _, _, metrics = read_response(sock)
            [line] = [x for x in metrics.split(b"\n") if x.startswith(b"counter_requests_in_")]
            seen.append(line)
            if line == b"counter_requests_in_progress 1.0":
                break
            time.sleep(0.02)
        assert seen[-1] == b"counter_requests_in_progress 1.0", seen
    finally:
        stop_server(server)
