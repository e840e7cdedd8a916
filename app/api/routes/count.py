"""POST /count: the network counting on from a number, its own answer fed back, streamed.

NDJSON (one JSON object per line, application/x-ndjson): curl prints each line as it comes
(`curl -N`) and a browser reads it with fetch() and a stream reader. Server-Sent Events were
the other choice, but the browser's EventSource sends only GET, with no body, so a page would
have to parse SSE from fetch() anyway. The last line says why the count stopped.
"""

from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from app.api import openapi
from app.api.bodies import COUNT_EXAMPLES, CountRequest, parse_count
from app.errors import Kind, ServiceError
from app.http.exchange import (
    NDJSON,
    declared_length,
    log_fields,
    read_body,
    require_json,
    service_of,
)
from app.http.lean import LeanRoute
from app.runtime.service import CounterService

router = APIRouter(tags=["count"], route_class=LeanRoute)


@router.post(
    "/count",
    summary="Count on from a number, the model's answer fed back as the next input",
    openapi_extra=openapi.request_body(CountRequest, COUNT_EXAMPLES),
    responses=openapi.count_responses(),
)
async def count(request: Request) -> Response:
    """Stream the network counting: one line per number (its answer, the exact one, the flags,
    proved), stopping after `count` numbers, at the first wrong answer if `stop_on_error`, or
    when the client goes away; a last line says which."""
    service = service_of(request)
    require_json(request)
    settings = service.settings
    async with service.admitted(declared_length(request)):
        asked = parse_count(await read_body(request), settings.max_digits, settings.max_count)
    log_fields(request, service, asked.model, len(asked.start))
    service.model(asked.model)  # 404 or 503 now, before the stream starts

    if service.streams >= settings.max_streams:
        raise ServiceError(
            Kind.TOO_MANY_STREAMS,
            f"{service.streams} counts are streaming, the limit is {settings.max_streams} "
            "(COUNTER_MAX_STREAMS); retry shortly",
            {"retry-after": "1"},
        )

    async def lines() -> AsyncIterator[bytes]:
        stream = service.count(asked.start, asked.count, asked.model, asked.stop_on_error)
        async for line in stream:
            yield orjson.dumps(line) + b"\n"

    service.streams += 1
    return _Counted(service, lines(), media_type=NDJSON)


class _Counted(StreamingResponse):
    """A stream counted in service.streams until it ends, however it ends."""

    def __init__(self, service: CounterService, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.service.streams -= 1
