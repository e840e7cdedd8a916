"""Smaller guards, each against a real uvicorn process: a tiny body cannot ask a huge run, the
documentation pages cannot be framed or run foreign scripts, a web page cannot post an
inference request without a preflight, the Host header can be checked, and what is not HTTP
is answered in the service's JSON error shape."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.server import connect, read_response, request, serving, start_server, stop_server

pytestmark = pytest.mark.server
INFER = "/v2/models/counter/infer"
V2_BODY = json.dumps(
    {"inputs": [{"name": "number", "shape": [1], "datatype": "BYTES", "data": ["1299"]}]}
).encode()


@pytest.fixture(scope="module")
def base(shipped: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("small_guards") / "server.log"
    server, url = start_server(shipped, log)
    yield url
    stop_server(server)


def test_a_number_in_exponent_notation_cannot_ask_a_huge_run(base: str) -> None:
    """35 bytes of {"number": 1e999999} once asked a 10^6-digit run as a small request."""
    for number in ("1e999999", "1e65"):
        body = f'{{"number": {number}, "detail": "none"}}'.encode()
        status, _, answer = request(
            base, "POST", "/increment", body, {"Content-Type": "application/json"}
        )
        assert status == 422, answer[:300]
        assert "send longer numbers as strings" in json.loads(answer)["message"]
    body = b'{"number": 1.299e3}'
    status, _, answer = request(
        base, "POST", "/increment", body, {"Content-Type": "application/json"}
    )
    assert status == 200
    assert json.loads(answer)["output"] == "1300"


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_documentation_pages_carry_a_content_policy_and_refuse_framing(
    base: str, page: str
) -> None:
    status, headers, html = request(base, "GET", page)
    assert status == 200
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    policy = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert "default-src 'none'" in policy
    assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    assert html.count(b"<script>") == policy.count("'sha256-")  # each inline script, by hash


@pytest.mark.parametrize(
    "media",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ],
)
def test_an_inference_request_a_page_could_post_without_preflight_is_refused(
    base: str, media: str
) -> None:
    status, _, answer = request(base, "POST", INFER, V2_BODY, {"Content-Type": media})
    assert status == 415, answer[:300]
    assert set(json.loads(answer)) == {"error"}
    assert "application/json" in json.loads(answer)["error"]


@pytest.mark.parametrize("media", ["application/json", "application/octet-stream", None])
def test_inference_requests_as_clients_send_them_are_served(base: str, media: str | None) -> None:
    """JSON, the binary extension's type, and none (tritonclient sends no Content-Type)."""
    headers = {"Content-Type": media} if media else {}
    status, _, answer = request(base, "POST", INFER, V2_BODY, headers)
    assert status == 200, answer[:300]


def with_host(
    base: str, host: str, path: str, body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    """A request with this Host header (tests.app.server.request sends its own)."""
    method = "POST" if body else "GET"
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
    with connect(base) as sock:
        sock.sendall(head.encode() + b"Content-Type: application/json\r\n\r\n" + body)
        return read_response(sock)


def test_the_host_header_is_checked_when_hosts_are_listed(shipped: Path, tmp_path: Path) -> None:
    hosts = json.dumps(["counter.example", "127.0.0.1:8000"])
    with serving(shipped, tmp_path, COUNTER_ALLOWED_HOSTS=hosts) as (_, base, _):
        status, headers, answer = with_host(base, "evil.example", "/models")
        assert status == 400
        assert json.loads(answer)["error"] == "unknown_host"
        assert "COUNTER_ALLOWED_HOSTS" in json.loads(answer)["message"]
        assert headers["connection"] == "close"
        status, _, answer = with_host(base, "evil.example", INFER, V2_BODY)
        assert status == 400
        assert "COUNTER_ALLOWED_HOSTS" in json.loads(answer)["error"]  # the V2 shape
        assert with_host(base, "Counter.Example", "/models")[0] == 200
        assert with_host(base, "10.1.2.3:8000", "/readyz")[0] == 200  # probes: any Host


def test_any_host_is_served_by_default(base: str) -> None:
    # tests.app.server.request sends Host: test
    assert request(base, "GET", "/models")[0] == 200


@pytest.mark.parametrize(
    "raw",
    [
        b"FOO /x HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /increment HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n",
    ],
    ids=["unknown method", "two lengths", "HTTP/2 preface", "header without a colon"],
)
def test_what_is_not_http_is_answered_in_the_json_error_shape(base: str, raw: bytes) -> None:
    with connect(base) as sock:
        sock.sendall(raw)
        status, headers, body = read_response(sock)
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    error = json.loads(body)
    assert error["error"] == "malformed_request"
    assert "not valid HTTP/1.1" in error["message"]
