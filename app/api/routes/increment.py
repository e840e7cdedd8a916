"""POST /increment and POST /increment/batch: n + 1 by the model, step by step.

The hot path stays lean: the body is parsed by app.api.bodies (no pydantic), CounterService runs
the model where it should, and orjson writes the answer (numpy arrays included) as bytes.
"""

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app import tracing
from app.api import openapi
from app.api.bodies import (
    BATCH_EXAMPLES,
    INCREMENT_EXAMPLES,
    BatchRequest,
    IncrementRequest,
    parse_batch,
    parse_increment,
)
from app.http.exchange import (
    ClientGone,
    declared_length,
    json_reply,
    log_fields,
    read_body,
    require_json,
    service_of,
)
from app.http.lean import LeanRoute
from app.runtime.answers import Answer, BatchAnswer

router = APIRouter(tags=["increment"], route_class=LeanRoute)


@router.post(
    "/increment",
    summary="Add one to a number, digit by digit",
    openapi_extra=openapi.request_body(IncrementRequest, INCREMENT_EXAMPLES),
    responses=openapi.answer_responses(Answer, "the model's n + 1, its steps, proof, flags, check"),
)
async def increment(request: Request) -> Response:
    """n + 1 by the model, with each step's probabilities, whether it is proved, honest flags
    and the exact check."""
    service = service_of(request)
    require_json(request)
    async with service.admitted(declared_length(request)):
        body = await read_body(request)
        if tracing.TRACER is None:  # off: the plain call, not even a do-nothing `with`
            asked = parse_increment(body, service.settings.max_digits)
        else:
            with tracing.span("parse"):
                asked = parse_increment(body, service.settings.max_digits)
        log_fields(request, service, asked.model, len(asked.numbers[0]))
        async with ClientGone(request) as gone:
            results = await service.increment(asked.numbers, asked.model, asked.detail, gone)
        if tracing.TRACER is None:
            return json_reply(results[0])
        with tracing.span("answer"):
            return json_reply(results[0])


@router.post(
    "/increment/batch",
    summary="Add one to many numbers in one model run",
    openapi_extra=openapi.request_body(BatchRequest, BATCH_EXAMPLES),
    responses=openapi.answer_responses(BatchAnswer, "one answer per number, in the order sent"),
)
async def increment_batch(request: Request) -> Response:
    """n + 1 for each number, padded to the longest and run once; any bad item refuses all (422)."""
    service = service_of(request)
    require_json(request)
    settings = service.settings
    async with service.admitted(declared_length(request)):
        body = await read_body(request)
        with tracing.span("parse"):
            asked = parse_batch(
                body, settings.max_digits, settings.max_batch_items, settings.max_batch_digits
            )
        log_fields(request, service, asked.model, sum(map(len, asked.numbers)))
        async with ClientGone(request) as gone:
            results = await service.increment(asked.numbers, asked.model, asked.detail, gone)
        with tracing.span("answer"):
            return json_reply({"results": results})
