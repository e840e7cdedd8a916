"""Reading the body: 413 before or mid-stream past the limit, and a client leaving mid-body."""

import asyncio
from typing import Any

import pytest
from starlette.types import Message

from app.main import create_app, lifespan
from app.settings import Settings
from tests.app.client import post, started

LIMIT = 1024


def test_declared_length_over_the_limit_is_413(shipped: object) -> None:
    with started(Settings(max_body_bytes=LIMIT)) as client:
        body = b'{"number": "' + b"1" * LIMIT + b'"}'
        response = post(client, "/increment", body)
        assert response.status_code == 413
        assert response.json() == {
            "error": "body_too_large",
            "message": f"the request body is larger than {LIMIT} bytes (COUNTER_MAX_BODY_BYTES)",
            "request_id": response.headers["x-request-id"],
        }
        assert response.headers["connection"] == "close"
        assert post(client, "/increment", {"number": "1" * 900}).status_code == 200


def post_scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/increment",
        "raw_path": b"/increment",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],  # chunked: no Content-Length
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }


def test_streamed_body_is_cut_off_at_the_limit_not_read_whole() -> None:
    """Drive the ASGI app directly: count how many chunks of an endless body it pulls."""
    app = create_app(Settings(max_body_bytes=LIMIT))
    pulled = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"1" * 256, "more_body": True}  # never ends

    async def send(message: Message) -> None:
        sent.append(message)

    async def started() -> None:
        async with lifespan(app):
            await app(post_scope(), receive, send)

    asyncio.run(started())
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 413
    assert b"body_too_large" in sent[1]["body"]
    assert pulled == LIMIT // 256 + 1  # stopped at the first chunk past the limit


def test_a_client_leaving_mid_body_is_counted_not_logged_as_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(Settings())
    sent: list[Message] = []
    messages: list[Message] = [
        {"type": "http.request", "body": b'{"number": "12', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    async def started() -> None:
        async with lifespan(app):
            await app(post_scope(), receive, send)

    asyncio.run(started())
    assert sent[0]["status"] == 499
    assert b"client_disconnected" in sent[1]["body"]
    assert "failed" not in caplog.text
