"""POST /count: the network counting on by itself, streamed as NDJSON, with the input rules of
/increment, stopping where asked, and stopping when its client goes away."""

import json
import socket
import time
import urllib.request
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.settings import Settings
from core.codec import add_one
from tests.app.client import conforms, post, started
from tests.app.server import start_server, stop_server


def count(client: TestClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = post(client, "/count", body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


def test_each_line_is_the_models_answer_fed_back(client: TestClient, spec: dict[str, Any]) -> None:
    lines = count(client, {"start": "99999", "count": 25})
    *numbers, end = lines
    assert [line["index"] for line in numbers] == list(range(1, 26))
    assert numbers[0]["input"] == "99999"
    for line, following in pairwise(numbers):
        assert following["input"] == line["output"]  # its own answer is the next input
    for line in numbers:
        assert line["expected"] == add_one(line["input"])
        assert line["correct"] is (line["output"] == line["expected"])
        assert line["proved"] is True  # counter: every answer proved
        conforms(spec, line, "CountLine")
    assert end == {"done": True, "reason": "count", "sent": 25, "wrong": 0}
    conforms(spec, end, "CountEnd")


def test_stop_on_error_stops_at_the_first_wrong_answer(client: TestClient, post_card: Any) -> None:
    failure = post_card.metrics.carry_scan.first_failure
    assert failure is not None
    start = str(int(failure.example) - 5)  # five numbers before the model's first known failure
    lines = count(
        client, {"start": start, "count": 50, "model": "counter-post", "stop_on_error": True}
    )
    *numbers, end = lines
    assert [line["correct"] for line in numbers] == [True] * (len(numbers) - 1) + [False]
    assert numbers[-1]["input"] == failure.example
    assert end["reason"] == "error"
    assert end["wrong"] == 1
    without = count(client, {"start": start, "count": 8, "model": "counter-post"})
    assert without[-1]["reason"] == "count"  # without stop_on_error it goes on
    assert len(without) == 9


@pytest.mark.parametrize(
    ("body", "status", "said"),
    [
        ({"start": "12a", "count": 3}, 422, "contains 'a'"),
        ({"start": "1", "count": 0}, 422, "count must be a whole number from 1 to 10000"),
        ({"start": "1", "count": 10001}, 422, "(COUNTER_MAX_COUNT)"),
        ({"start": "1", "count": "3"}, 422, "count must be a whole number"),
        ({"start": "1"}, 422, "missing field 'count'"),
        ({"count": 3}, 422, "missing field 'start'"),
        ({"start": "1", "count": 3, "stop_on_error": "yes"}, 422, "stop_on_error must be true"),
        ({"start": "1", "count": 3, "model": "nope"}, 404, "no model named 'nope'"),
        ({"start": "1", "count": 3, "colour": 1}, 422, "unknown field 'colour'"),
    ],
)
def test_count_has_the_input_rules_of_increment(
    client: TestClient, body: dict[str, Any], status: int, said: str
) -> None:
    response = post(client, "/count", body)
    assert response.status_code == status
    assert said in response.json()["message"]


def test_a_count_is_capped_by_a_setting(shipped: Path) -> None:
    with started(Settings(models_dir=shipped, max_count=5)) as client:
        response = post(client, "/count", {"start": "1", "count": 6})
        assert response.status_code == 422
        assert "from 1 to 5 (COUNTER_MAX_COUNT)" in response.json()["message"]


@pytest.mark.server
def test_a_client_that_leaves_mid_stream_stops_the_count(shipped: Path, tmp_path: Path) -> None:
    """The server stops counting when its client goes away, and answers others meanwhile."""
    server, base = start_server(shipped, tmp_path / "server.log")
    try:
        port = int(base.rsplit(":", 1)[1])
        body = json.dumps({"start": "1", "count": 10000}).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            head = f"POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n"
            sock.sendall(head.encode() + b"Content-Type: application/json\r\n\r\n" + body)
            received = b""
            while received.count(b"\n") < 30:  # a few lines into the stream ...
                received += sock.recv(4096)
        # ... then gone. The count must stop: the digits-processed counter stops growing.
        time.sleep(0.5)
        first = _digits(base)
        time.sleep(1.0)
        assert _digits(base) == first
        assert first < 5000  # stopped soon after: 10 000 numbers would be about 39 000 digits
        with socket.create_connection(("127.0.0.1", port), timeout=10) as other:
            other.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            assert other.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        stop_server(server)


def _digits(base: str) -> float:
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith('counter_digits_processed_total{model="counter"}'):
            return float(line.split()[-1])
    return 0.0
