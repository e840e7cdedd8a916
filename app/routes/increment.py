"""POST /increment and POST /increment/batch: n + 1 by the model, step by step.

The hot path stays lean: the body is parsed by app.inputs (no pydantic), the model runs once,
and orjson writes the answer (numpy arrays included) straight into the response bytes.
"""

from functools import partial

import anyio
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect

from app import memory
from app.batcher import BATCHED_DIGITS
from app.deps import batcher_of, long_runs_of, options_of, ready_registry, settings_of
from app.docs import (
    BATCH_EXAMPLE,
    FLAGGED_EXAMPLE,
    INCREMENT_EXAMPLE,
    JSON,
    error_responses,
    request_body,
    response,
)
from app.engine import answer
from app.errors import InputError, unknown_model
from app.inputs import IncrementRequest, parse_batch, parse_increment, resolve_detail
from app.routes.lean import LeanRoute
from app.schemas import BatchRequest, BatchResponse, IncrementResponse
from app.schemas import IncrementRequest as IncrementRequestSchema

router = APIRouter(tags=["increment"], route_class=LeanRoute)

# Beyond this many digits in one request, the model runs in a worker thread (onnxruntime
# releases the GIL), so one long number does not stall every other request; at most
# LONG_RUNS at once, since a 10^6-digit run briefly needs a few hundred MB.
INLINE_DIGITS = 20_000
LONG_RUNS = 2  # app.main makes the limiter, one per running app


async def _json_body(request: Request) -> bytes:
    """The body of a JSON request (415 for any other content type), read straight off ASGI."""
    content_type = b""
    for name, value in request.scope["headers"]:
        if name == b"content-type":
            content_type = value
            break
    media = content_type.split(b";", 1)[0].strip().lower().decode("latin-1")
    if media != JSON and not (media.startswith("application/") and media.endswith("+json")):
        shown = repr(media) if media else "no Content-Type"
        raise InputError(
            415,
            "unsupported_media_type",
            f"the body must be JSON sent with Content-Type: application/json, not {shown}",
        )
    chunks: list[bytes] = []
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _answer(request: Request, asked: IncrementRequest, batch: bool) -> Response:
    registry = ready_registry(request)
    model = registry.find(asked.model)
    if model is None:
        raise unknown_model(asked.model, registry.names)
    digits = sum(map(len, asked.numbers))
    detail = resolve_detail(asked.detail, digits, settings_of(request).max_detail_digits)
    if digits <= BATCHED_DIGITS:  # shares a model run with concurrent small requests
        results = await batcher_of(request, model.card.name).answer(asked.numbers, detail)
    elif digits <= INLINE_DIGITS:
        results = answer(model, asked.numbers, detail, options_of(request))
    else:
        run = partial(answer, model, asked.numbers, detail, options_of(request))
        results = await anyio.to_thread.run_sync(run, limiter=long_runs_of(request))
    payload = {"results": results} if batch else results[0]
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    # After a long request is sent, its memory goes back to the OS (see app.memory).
    after = BackgroundTask(memory.release) if digits > INLINE_DIGITS else None
    return Response(body, media_type=JSON, background=after)


@router.post(
    "/increment",
    summary="Add one to a number, digit by digit",
    openapi_extra=request_body(
        IncrementRequestSchema,
        {
            "a string of digits": {"number": "1299"},
            "a JSON integer": {"number": 1299},
            "another model, no steps": {
                "number": "1099999999999",
                "model": "counter-post",
                "detail": "none",
            },
        },
    ),
    responses={
        200: response(
            IncrementResponse,
            "the model's n + 1, its steps, flags and the exact check",
            **{
                "a carry the model gets right": INCREMENT_EXAMPLE,
                "beyond what the model is trusted with": FLAGGED_EXAMPLE,
            },
        ),
        **error_responses(),
    },
)
async def increment(request: Request) -> Response:
    """n + 1 by the model, with each step's probabilities, honest flags and the exact check."""
    settings = settings_of(request)
    asked = parse_increment(await _json_body(request), settings.max_digits)
    return await _answer(request, asked, batch=False)


@router.post(
    "/increment/batch",
    summary="Add one to many numbers in one model run",
    openapi_extra=request_body(
        BatchRequest, {"two numbers": {"numbers": ["1299", 41], "detail": "none"}}
    ),
    responses={
        200: response(
            BatchResponse,
            "one result per number, in the order sent",
            **{"two numbers": BATCH_EXAMPLE},
        ),
        **error_responses(),
    },
)
async def increment_batch(request: Request) -> Response:
    """n + 1 for each number, padded to the longest and run once; any bad item refuses all (422)."""
    settings = settings_of(request)
    body = await _json_body(request)
    asked = parse_batch(
        body, settings.max_digits, settings.max_batch_items, settings.max_batch_digits
    )
    return await _answer(request, asked, batch=True)
