"""What /docs shows: schemas derived from the code that runs, examples made by the live service.

- Answer schemas come from the TypedDicts the engine builds (app.runtime.answers), request schemas
  from the input rules and the running limits (patterns, minimum, maxItems, what may be null).
- Response examples are real answers, made by the loaded models the first time the OpenAPI
  document is asked for; error examples come from the real rules (app.api.bodies, app.errors).
So a reader of /docs sees what the service sends, and schemathesis can hold it to that.
"""

from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app import __version__
from app.api.bodies import parse_increment
from app.api.schemas import model_list
from app.api.tensors import (
    MAX_RANK,
    SERVER,
    InferRequest,
    OutputTensor,
    model_config,
    model_metadata,
    write_response,
)
from app.errors import Kind, ServiceError, unknown_model
from app.runtime.answers import DETAILS, Answer, BatchAnswer, CountEnd, CountLine, json_schema
from app.runtime.engine import answer
from app.runtime.service import CounterService, count_line
from app.settings import Settings
from core.codec import encode_batch

JSON = "application/json"
NDJSON = "application/x-ndjson"
_REF = "#/components/schemas/"

INCREMENT_REQUESTS: dict[str, Any] = {
    "a string of digits": {"number": "1299"},
    "a JSON integer": {"number": 1299},
    "the post's model, past its carry, no steps": {
        "number": "999999999999999999",
        "model": "counter-post",
        "detail": "none",
    },
}
BATCH_REQUESTS: dict[str, Any] = {"two numbers": {"numbers": ["1299", 41], "detail": "none"}}
COUNT_REQUESTS: dict[str, Any] = {
    "watch the post's model break": {
        "start": "999999999999999990",
        "count": 20,
        "model": "counter-post",
        "stop_on_error": True,
    },
    "a proved roll-over": {"start": "9" * 30, "count": 3},
}


def _number(max_digits: int) -> dict[str, Any]:
    return {
        "description": f"ASCII digits 0-9 (a string), or a JSON integer >= 0; at most "
        f"{max_digits} digits (COUNTER_MAX_DIGITS). Leading zeros are accepted.",
        "oneOf": [
            {"type": "string", "pattern": "^[0-9]+$", "minLength": 1, "maxLength": max_digits},
            {"type": "integer", "minimum": 0},
        ],
    }


def _optional(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "anyOf": [schema, {"type": "null"}]}


def request_schemas(settings: Settings) -> dict[str, Any]:
    """The request bodies, with the running limits: exactly what app.api.bodies accepts."""
    model = _optional(
        {"type": "string"}, "a model name from GET /models; null or absent: the default"
    )
    detail = _optional(
        {"type": "string", "enum": list(DETAILS)},
        "'full': every step with its 10 probabilities; 'digits': every step without them; "
        "'summary': only the least confident steps; 'none': no steps. 'auto' (the default, "
        "also for null): 'full' up to COUNTER_MAX_DETAIL_DIGITS digits, 'summary' beyond.",
    )
    number = _number(settings.max_digits)
    return {
        "IncrementRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["number"],
            "properties": {"number": number, "model": model, "detail": detail},
        },
        "BatchRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["numbers"],
            "properties": {
                "numbers": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": settings.max_batch_items,
                    "items": number,
                    "description": "one bad item refuses the whole request; numbers x (longest "
                    f"+ 1) at most {settings.max_batch_digits} (COUNTER_MAX_BATCH_DIGITS)",
                },
                "model": model,
                "detail": detail,
            },
        },
        "CountRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["start", "count"],
            "properties": {
                "start": number,
                "count": {"type": "integer", "minimum": 1, "maximum": settings.max_count},
                "model": model,
                "stop_on_error": _optional(
                    {"type": "boolean"}, "stop at the first wrong answer (default false)"
                ),
            },
        },
    }


def request_body(name: str, examples: dict[str, Any]) -> dict[str, Any]:
    """openapi_extra for a route that parses its own body: its schema and named examples."""
    named = {title: {"summary": title, "value": value} for title, value in examples.items()}
    return {
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": {"$ref": _REF + name}, "examples": named}},
        }
    }


def _error_example(*errors: ServiceError) -> dict[str, Any]:
    return {
        f"{error.kind.label} {i}": {
            "summary": error.message[:60],
            "value": {"error": error.kind.label, "message": error.message, "request_id": "c0ffee"},
        }
        for i, error in enumerate(errors)
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
            "content": {JSON: {"schema": ref, "examples": _error_example(*errors)}},
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


V2_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
_V2_PARAMETERS = {"type": ["object", "null"], "description": "binary_data_size, binary_data"}


def v2_infer_request() -> dict[str, Any]:
    """The inference request as app.api.tensors reads it (the protocol's $inference_request):
    anything outside it is refused with 400."""
    scalar = {"type": ["number", "string", "boolean"]}
    return {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": ["string", "null"], "description": "echoed in the answer"},
            "parameters": {
                **_V2_PARAMETERS,
                "description": "binary_data_output: true asks every output as binary data",
            },
            "inputs": {
                "type": "array",
                "minItems": 1,
                "description": "exactly one: 'digits' (INT64 [batch, time]) or 'number' "
                "(BYTES [batch])",
                "items": {
                    "type": "object",
                    "required": ["name", "shape", "datatype"],
                    "properties": {
                        "name": {"type": "string", "enum": ["digits", "number"]},
                        "shape": {
                            "type": "array",
                            "maxItems": MAX_RANK,
                            "items": {"type": "integer", "minimum": 0},
                        },
                        "datatype": {"type": "string", "enum": ["INT64", "BYTES"]},
                        "parameters": _V2_PARAMETERS,
                        "data": {
                            "type": "array",
                            "description": "row-major: flat, or nested exactly as the shape "
                            "says; absent when parameters.binary_data_size says where its "
                            "binary data is",
                            "items": {"anyOf": [scalar, {"type": "array"}]},
                        },
                    },
                },
            },
            "outputs": {
                "type": ["array", "null"],
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "parameters": _V2_PARAMETERS},
                },
            },
        },
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
    components["InferenceRequest"] = v2_infer_request()
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


def _example(content: dict[str, Any], title: str, value: Any) -> None:
    content.setdefault("examples", {})[title] = {"summary": title, "value": value}


def _live_examples(schema: dict[str, Any], service: CounterService) -> None:
    """Real answers of the loaded models, and the live refusals, as the examples."""
    paths = schema["paths"]

    def real(numbers: list[str], model: str | None, detail: Any) -> Any:
        found = service.registry.find(model)
        if found is None:
            return None
        return orjson.loads(
            orjson.dumps(
                answer(found, numbers, detail, service.options),
                option=orjson.OPT_SERIALIZE_NUMPY,
            )
        )

    ok = paths["/increment"]["post"]["responses"]["200"]["content"][JSON]
    proved = real(["1299"], None, "full")
    if proved:
        _example(ok, "a carry the model gets right, proved", proved[0])
    flagged = real(["999999999999999999"], "counter-post", "none")
    if flagged:
        _example(ok, "the post's model, past its carry", flagged[0])
    batch = real(["1299", "41"], None, "none")
    if batch:
        content = paths["/increment/batch"]["post"]["responses"]["200"]["content"][JSON]
        _example(content, "two numbers", {"results": batch})
    count_ok = paths["/count"]["post"]["responses"]["200"]["content"][NDJSON]
    lines = []
    number = "999999999999999990"
    post_model = service.registry.find("counter-post")
    for index in range(1, 13):
        if post_model is None:
            break
        (result,) = answer(post_model, [number], "none", service.options)
        lines.append(orjson.dumps(count_line(index, result)).decode())
        number = result["output"]
    if lines:
        end = {"done": True, "reason": "count", "sent": len(lines), "wrong": 0}
        wrong = sum('"correct":false' in line for line in lines)
        end["wrong"] = wrong
        count_ok["example"] = "\n".join([*lines, orjson.dumps(end).decode()]) + "\n"
    registry = service.registry
    listed = model_list(registry).model_dump(mode="json")
    for path, value in (("/models", listed), ("/models/{name}", listed["models"][0])):
        paths[path]["get"]["responses"]["200"]["content"][JSON]["example"] = value
    _v2_examples(paths, service)
    settings = service.settings
    live = {
        "404": unknown_model("countr", service.registry.names),
        "413": ServiceError(
            Kind.BODY_TOO_LARGE,
            f"the request body is larger than {settings.max_body_bytes} bytes "
            "(COUNTER_MAX_BODY_BYTES)",
        ),
    }
    for path in ("/increment", "/increment/batch", "/count"):
        for status, error in live.items():
            content = paths[path]["post"]["responses"][status]["content"][JSON]
            content["examples"] = _error_example(error)


def _v2_examples(paths: dict[str, Any], service: CounterService) -> None:
    """The protocol's answers, made by the loaded default model."""
    model = service.registry.models[service.registry.default]
    name, version = model.card.name, model.card.version
    digits = encode_batch(["1299"])
    probs = model.run(digits)
    request = InferRequest(id=None, inputs=[], outputs=None)
    parts, _ = write_response(
        name, version, request, [OutputTensor("probabilities", "FP32", list(probs.shape), probs)]
    )
    body = b"".join(parts)
    ready = {"name": name, "ready": True}
    examples = {
        "/v2": {"name": SERVER, "version": __version__, "extensions": ["binary_tensor_data"]},
        "/v2/health/live": {"live": True},
        "/v2/health/ready": {"ready": True},
        "/v2/models/{name}": model_metadata(model),
        "/v2/models/{name}/versions/{version}": model_metadata(model),
        "/v2/models/{name}/ready": ready,
        "/v2/models/{name}/versions/{version}/ready": ready,
        "/v2/models/{name}/config": model_config(model),
    }
    for path, value in examples.items():
        paths[path]["get"]["responses"]["200"].setdefault("content", {})[JSON] = {"example": value}
    inferred = orjson.loads(body)
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        paths[path]["post"]["responses"]["200"].setdefault("content", {})[JSON] = {
            "example": inferred
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
    service: CounterService | None = app.state.service
    if service is None or not service.ready:
        return schema  # not cached: the examples come once the models are loaded
    _live_examples(schema, service)
    app.openapi_schema = schema
    return schema
