"""The real server: `python -m app` on a free loopback port, asked, then stopped with SIGTERM."""

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.app.server import start_server, stop_server


@pytest.mark.server
def test_serves_then_exits_cleanly_on_sigterm(shipped: Path, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    server, base = start_server(shipped, log)
    try:
        request = urllib.request.Request(
            f"{base}/increment",
            data=b'{"number": "1999"}',
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            answer = json.loads(response.read())
        assert answer["output"] == "2000"
        assert answer["check"]["correct"] is True
    finally:
        code = stop_server(server)
    assert code == 0, log.read_text()
    text = log.read_text()
    assert "Application shutdown complete" in text
    assert "Traceback" not in text


@pytest.mark.server
def test_every_line_the_server_writes_is_one_json_object(shipped: Path, tmp_path: Path) -> None:
    """Start-up, shutdown and access lines alike: a log pipeline parses each line as JSON."""
    log = tmp_path / "server.log"  # the server's stdout and stderr, both
    server, base = start_server(shipped, log, COUNTER_LOG_LEVEL="debug")
    try:
        assert _post(base, "/increment", b'{"number": "1999"}')[0] == 200
        assert _post(base, "/increment", b'{"number": "-1"}')[0] == 422
    finally:
        assert stop_server(server) == 0, log.read_text()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    logged = [line["message"] for line in lines if "message" in line]
    assert "Application startup complete." in logged
    assert "Application shutdown complete." in logged
    assert {line["level"] for line in lines if "level" in line} >= {"info", "debug"}
    assert [line["status"] for line in lines if line.get("path") == "/increment"] == [200, 422]


def _post(
    base: str, path: str, body: bytes, request_id: str | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if request_id is not None:
        headers["X-Request-ID"] = request_id
    request = urllib.request.Request(f"{base}{path}", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, {"id": response.headers["X-Request-ID"]}
    except urllib.error.HTTPError as refused:
        return refused.code, {"id": refused.headers["X-Request-ID"], **json.loads(refused.read())}


@pytest.mark.server
def test_each_request_is_one_json_access_line_with_its_id_model_and_digits(
    shipped: Path, tmp_path: Path
) -> None:
    """The access log is what a log pipeline reads: one JSON object per line, carrying the
    request id the client sent (or a made one, echoed), the model and the digits asked."""
    log = tmp_path / "server.log"
    server, base = start_server(shipped, log)
    try:
        sent = [
            _post(base, "/increment", b'{"number": "1999"}', "trace-42"),
            _post(base, "/increment/batch", b'{"numbers": ["12", "999"], "model": "counter-post"}'),
            _post(base, "/increment", b'{"number": "5", "model": "nope"}', "bad id\twith tab"),
            _post(base, "/increment", b'{"number": "5"}', "x" * 300),
        ]
    finally:
        stop_server(server)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    by_id = {
        line["request_id"]: line for line in lines if line.get("path", "").startswith("/increment")
    }
    assert [status for status, _ in sent] == [200, 200, 404, 200]
    assert sent[0][1]["id"] == "trace-42"
    # An id that is not short and plain is replaced, not echoed or logged.
    for _, reply in sent[2:]:
        assert reply["id"] != "bad id\twith tab"
        assert len(reply["id"]) <= 64
    assert sent[2][1]["request_id"] == sent[2][1]["id"]  # error bodies carry it too
    assert set(by_id) == {reply["id"] for _, reply in sent}
    first = by_id["trace-42"]
    assert first["method"] == "POST"
    assert first["status"] == 200
    assert first["model"] == "counter"
    assert first["digits"] == 4
    assert isinstance(first["duration_ms"], float)
    assert isinstance(first["time"], float)
    batch = by_id[sent[1][1]["id"]]
    assert (batch["path"], batch["model"], batch["digits"]) == (
        "/increment/batch",
        "counter-post",
        5,
    )
    unknown = by_id[sent[2][1]["id"]]
    assert (unknown["status"], unknown["model"], unknown["digits"]) == (404, "nope", 1)
