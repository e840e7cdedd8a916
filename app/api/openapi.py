"""What /docs shows: schemas derived from the code that runs, examples made by the live service.

- Answer schemas come from the TypedDicts the engine builds (app.runtime.answers), request
  schemas from the body types beside their parsers (app.api.bodies, app.api.infer_request) with the
  running limits (patterns, minimum, maxItems, what may be null).
- Response examples are real answers, made by the loaded models the first time the OpenAPI
  document is asked for (app.api.examples); error examples come from the real rules.
So a reader of /docs sees what the service sends, and schemathesis can hold it to that.
"""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.api import examples
from app.api.bodies import BatchRequest, CountRequest, IncrementRequest, parse_increment, schema
from app.api.examples import error_examples
from app.api.infer_request import V2_ERROR, request_schema
from app.errors import Kind, ServiceError, unknown_model
from app.http.exchange import JSON, NDJSON
from app.runtime.answers import Answer, BatchAnswer, CountEnd, CountLine, json_schema
from app.settings import Settings

_REF = "#/components/schemas/"
BODIES = (IncrementRequest, BatchRequest, CountRequest)


def request_schemas(settings: Settings) -> dict[str, Any]:
    """The request bodies, derived from their types, with the running limits."""
    limits = settings.model_dump()
    return {body.__name__: schema(body, limits) for body in BODIES}


def request_body(body: Any, named: dict[str, Any]) -> dict[str, Any]:
    """openapi_extra for a route that parses its own body: its type's schema and examples."""
    values = {title: {"summary": title, "value": value} for title, value in named.items()}
    return {
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": {"$ref": _REF + body.__name__}, "examples": values}},
        }
    }


def _refusal(body: bytes) -> ServiceError:
    try:
        parse_increment(body, max_digits=1_000_000)
    except ServiceError as exc:
        return exc
    raise AssertionError(f"{body!r} was meant to be refused")


def error_responses() -> dict[int | str, dict[str, Any]]:
    """The refusals of the POST endpoints, with real messages (the live ones replace some)."""
    ref = {"$ref": _REF + "ErrorBody"}

    def entry(description: str, *errors: ServiceError) -> dict[str, Any]:
        return {
            "description": description,
            "content": {JSON: {"schema": ref, "examples": error_examples(*errors)}},
        }

    return {
        400: entry("malformed JSON", _refusal(b'{"number": }')),
        404: entry("unknown model", unknown_model("countr", ["counter", "counter-post"])),
        413: entry("body too large", ServiceError(Kind.BODY_TOO_LARGE, "set at start")),
        415: entry(
            "not sent as JSON",
            ServiceError(
                Kind.UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON sent with Content-Type: application/json, not "
                "'application/x-www-form-urlencoded'",
            ),
        ),
        422: entry(
            "a number or a field that breaks the input rules",
            _refusal(b'{"number": "-5"}'),
            _refusal(b'{"number": "1e3"}'),
            _refusal('{"number": "١٢٣"}'.encode()),
            _refusal(b'{"number": true}'),
            _refusal(b'{"numbr": "5"}'),
        ),
        503: entry(
            "starting, stopping, or busy (with Retry-After)",
            ServiceError(Kind.OVERLOADED, "the service is busy: ... retry shortly"),
        ),
    }


def v2_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Refusals in the protocol's error shape."""
    words = {
        400: "a malformed request or tensor, or a model refused by its checks",
        401: "load/unload without the operator's bearer token (COUNTER_ADMIN_TOKEN)",
        403: "repository changes are off (no COUNTER_ADMIN_TOKEN, or COUNTER_MODEL_CONTROL)",
        404: "no such model or version",
        413: "body too large",
        415: "sent as a form or text, not JSON or binary tensors",
        422: "a number or tensor past the input rules",
        503: "starting, stopping or busy (with Retry-After)",
    }
    content = {JSON: {"schema": V2_ERROR}}
    return {status: {"description": words[status], "content": content} for status in statuses}


def operator_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Refusals of the GET endpoints, in the counter's error shape."""
    words = {404: "no such model", 503: "starting or stopping"}
    content = {JSON: {"schema": {"$ref": _REF + "ErrorBody"}}}
    return {status: {"description": words[status], "content": content} for status in statuses}


def path_parameters(*names: str) -> dict[str, Any]:
    """openapi_extra for a lean route's path parameters (it reads them itself)."""
    examples = {"name": "counter", "version": "2.0.0"}
    return {
        "parameters": [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "example": examples.get(name, ""),
            }
            for name in names
        ]
    }


def answer_responses(shape: Any, description: str) -> dict[int | str, dict[str, Any]]:
    """A 200 response of one of the answer shapes (its examples are filled in live)."""
    ok = {
        "description": description,
        "content": {JSON: {"schema": {"$ref": _REF + shape.__name__}}},
    }
    return {200: ok, **error_responses()}


def count_responses() -> dict[int | str, dict[str, Any]]:
    line = {"oneOf": [{"$ref": _REF + "CountLine"}, {"$ref": _REF + "CountEnd"}]}
    schema = {
        "type": "array",
        "items": line,
        "description": "NDJSON: each item is one line of the stream",
    }
    ok = {
        "description": "one JSON object per line: each number the model counted, then the end",
        "content": {NDJSON: {"schema": schema}},
    }
    busy = {
        "description": "COUNTER_MAX_STREAMS counts are streaming (with Retry-After)",
        "content": {JSON: {"schema": {"$ref": _REF + "ErrorBody"}}},
    }
    return {200: ok, **error_responses(), 429: busy}


def _components(schema: dict[str, Any], settings: Settings) -> None:
    """Put the answer shapes (and what they use) and the request bodies in components."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for shape in (Answer, BatchAnswer, CountLine, CountEnd):
        generated = json_schema(shape)
        components.update(generated.pop("$defs", {}))
        components[shape.__name__] = generated
    components.update(request_schemas(settings))
    components["InferenceRequest"] = request_schema()
    components["ErrorBody"] = {
        "type": "object",
        "description": "Every refusal: a short kind, what was wrong and what is accepted, and "
        "the request's id (also in the X-Request-ID header and the access log).",
        "required": ["error", "message", "request_id"],
        "properties": {
            "error": {"type": "string", "enum": sorted({k.label for k in Kind})},
            "message": {"type": "string"},
            "request_id": {"type": "string"},
        },
    }


def openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document: derived schemas, and live examples once the models are loaded."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    settings: Settings = app.state.settings
    _components(schema, settings)
    if examples.live(schema, app.state.service):
        app.openapi_schema = schema  # not cached before: the examples come once models load
    return schema
