"""The HTTP edge every route shares: the service, the JSON body, a client leaving, the reply.

Routes translate HTTP into one CounterService call and its answer back into bytes; what they
all need for that lives here, so each route file holds only its own protocol.
"""

import asyncio
from typing import Any, Literal

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.errors import Kind, ServiceError, preview
from app.http.headers import state_of
from app.runtime.admission import large_admission
from app.runtime.service import CounterService

JSON = "application/json"
NDJSON = "application/x-ndjson"  # POST /count's lines


def service_of(request: Request) -> CounterService:
    """The running app's CounterService (built by the lifespan)."""
    service: CounterService | None = request.app.state.service
    if service is None:
        raise ServiceError(Kind.NOT_READY, "the service is starting; retry when /readyz is 200")
    return service


def log_fields(request: Request, service: CounterService, model: str | None, digits: int) -> None:
    """What the access line says of a request beyond HTTP: the model asked (the default for
    None; an unknown name cut short) and how many digits it asked about."""
    name = service.registry.default if model is None else model
    state = state_of(request)
    state.model = name if len(name) <= 64 else name[:64] + "..."
    state.digits = digits


def require_json(request: Request) -> None:
    """415 unless the body is declared as JSON (application/json or any */*+json)."""
    media = state_of(request).media_type
    if media != JSON and not (media.startswith("application/") and media.endswith("+json")):
        shown = preview(media, 60) if media else "no Content-Type"
        raise ServiceError(
            Kind.UNSUPPORTED_MEDIA_TYPE,
            f"the body must be JSON sent with Content-Type: application/json, not {shown}",
        )


TENSOR_MEDIA = (JSON, "application/octet-stream", "")


def require_tensor_media(request: Request) -> None:
    """415 for an inference request sent as a form or text: the Content-Types a web page may
    POST from another origin without asking first (a CORS preflight). JSON, the binary
    extension's application/octet-stream, and none at all (tritonclient sends none) pass."""
    media = state_of(request).media_type
    if media not in TENSOR_MEDIA and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise ServiceError(
            Kind.UNSUPPORTED_MEDIA_TYPE,
            f"an inference request is sent with Content-Type: application/json (or "
            f"application/octet-stream with binary tensors), not {preview(media, 60)}",
        )


def declared_length(request: Request) -> int | None:
    """The request's Content-Length, or None when it sends none (chunked)."""
    return state_of(request).declared_length


async def read_body(request: Request) -> bytes:
    """The whole body, read straight off ASGI (the size limit is app.http.edge's job)."""
    admission = large_admission()
    if admission is not None:
        admission.reading()
    chunks: list[bytes] = []
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ServiceError(Kind.CLIENT_DISCONNECTED, "the client left before sending the body")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            if admission is not None:
                admission.arrived()
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class ClientGone(asyncio.Event):
    """Set when the client goes away, for a request whose body was read whole.

    After the body, uvicorn's receive() returns only when the connection closes (or the
    response is done), so one task waiting on it notices a client that left mid-run. That task
    starts with the first wait(): only runs that leave the event loop wait, so the many small
    answers pay nothing for it (a task made and cancelled per request cost more than the
    request's parsing). Used as `async with ClientGone(request) as gone:`, which stops the task
    (if started) at the end; a class, because a generator-based context manager costs more.
    """

    def __init__(self, request: Request) -> None:
        super().__init__()
        self._request = request
        self._task: asyncio.Future[None] | None = None

    async def __aenter__(self) -> "ClientGone":
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()

    async def wait(self) -> Literal[True]:
        if self._task is None:
            self._task = asyncio.ensure_future(self._watch())
        return await super().wait()

    async def _watch(self) -> None:
        while (await self._request.receive())["type"] != "http.disconnect":
            pass
        self.set()


ANSWER_CHUNK = 1 << 20  # a larger answer is written a megabyte at a time
Buffer = bytes | memoryview  # a part of an answer: bytes, or an array's memory lent as it is


class LargeAnswer(Response):
    """An answer written in ANSWER_CHUNK pieces: each waits until the client has taken the
    last (uvicorn waits on a full write buffer before each send), so the request's large
    slot is held until its answer is nearly all written, and a client that stops reading is
    cut off by COUNTER_WRITE_TIMEOUT_SECONDS instead of holding the answer in a buffer.
    Its parts are sent as they are, never joined: a binary tensor goes out of its array."""

    def __init__(
        self,
        parts: list[Buffer],
        status_code: int = 200,
        media_type: str | None = JSON,
        headers: dict[str, str] | None = None,
    ) -> None:
        size = str(sum(map(len, parts)))
        super().__init__(b"", status_code, {**(headers or {}), "content-length": size}, media_type)
        self.parts = parts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        views = [memoryview(part) for part in self.parts]
        pieces = [
            view[at : at + ANSWER_CHUNK]
            for view in views
            for at in range(0, len(view), ANSWER_CHUNK)
        ]
        for index, piece in enumerate(pieces, start=1):
            await send(
                {"type": "http.response.body", "body": piece, "more_body": index < len(pieces)}
            )
        if not pieces:
            await send({"type": "http.response.body", "body": b""})


def reply(
    parts: list[Buffer],
    status: int = 200,
    headers: dict[str, str] | None = None,
    media_type: str | None = JSON,
) -> Response:
    """The answer's parts (bytes, or byte views of arrays) as a response: joined when small,
    written in pieces when large."""
    size = sum(map(len, parts))
    if size > ANSWER_CHUNK:
        return LargeAnswer(parts, status, media_type, headers)
    body = parts[0] if len(parts) == 1 else b"".join(parts)
    return Response(body, status_code=status, media_type=media_type, headers=headers)


def json_reply(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """orjson's bytes of an answer (numpy arrays and scalars written as JSON numbers)."""
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    if len(body) > ANSWER_CHUNK:
        return LargeAnswer([body], status, JSON, headers)
    return Response(body, status_code=status, media_type=JSON, headers=headers)
