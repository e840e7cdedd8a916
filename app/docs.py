"""What /docs shows beyond the schemas: request and response examples for every endpoint.

Error examples are produced by the real input rules (app.inputs), so their messages are the
ones a client gets. Response examples are checked against the live model by the tests.
"""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from app.errors import InputError
from app.inputs import parse_increment
from app.registry import Registry
from app.schemas import ErrorBody

JSON = "application/json"


def _probabilities(digit: int, p: float) -> list[float]:
    rest = round((1.0 - p) / 9, 7)
    return [p if d == digit else rest for d in range(10)]


def _example_steps(number: str, output: str, p: float) -> list[dict[str, Any]]:
    padded = output.rjust(len(number) + 1, "0")
    return [
        {
            "position": j,
            "input_digit": int(d),
            "output_digit": int(o),
            "probability": p,
            "probabilities": _probabilities(int(o), p),
            "extra": j == len(number),
        }
        for j, (d, o) in enumerate(zip(("0" + number)[::-1], padded[::-1], strict=True))
    ]


INCREMENT_EXAMPLE: dict[str, Any] = {
    "input": "1299",
    "output": "1300",
    "detail": "full",
    "steps": _example_steps("1299", "1300", 0.9999),
    "min_probability": 0.9999,
    "min_probability_position": 0,
    "carry_run": 2,
    "reliable_carry_length": "unbounded",
    "carry_certified": True,
    "tested_length": 1000,
    "flags": {
        "beyond_reliable_carry": False,
        "beyond_tested_length": False,
        "low_confidence": False,
        "low_confidence_count": 0,
        "low_confidence_steps": [],
    },
    "warnings": [],
    "check": {"expected": "1300", "correct": True},
    "model": {"name": "counter", "version": "1.0.0"},
}

FLAGGED_EXAMPLE: dict[str, Any] = {
    **INCREMENT_EXAMPLE,
    "input": "1" + "9" * 30,
    "output": "1" + "9" * 9 + "0" * 21,
    "detail": "none",
    "steps": [],
    "min_probability": 0.5121,
    "min_probability_position": 21,
    "carry_run": 30,
    "reliable_carry_length": 20,
    "carry_certified": False,
    "tested_length": 20,
    "flags": {
        "beyond_reliable_carry": True,
        "beyond_tested_length": True,
        "low_confidence": True,
        "low_confidence_count": 1,
        "low_confidence_steps": [21],
    },
    "warnings": [
        "The input ends in 30 nines, more than this model's reliable carry length (20): "
        "the carry may be wrong.",
        "The input has 31 digits, longer than any length this model was tested on without "
        "error (20).",
        "1 step(s) chose a digit with probability below 0.9 (positions 21; position 0 is the "
        "units digit).",
        "The model's answer is wrong: 1999999999999999999999999999999 + 1 = "
        "2000000000000000000000000000000.",
    ],
    "check": {"expected": "2" + "0" * 30, "correct": False},
    "model": {"name": "counter-post", "version": "1.0.0"},
}


def _refusal(body: bytes) -> tuple[str, str]:
    try:
        parse_increment(body, max_digits=1_000_000)
    except InputError as exc:
        return exc.kind, exc.message
    raise AssertionError(f"{body!r} was meant to be refused")


def _error(description: str, *pairs: tuple[str, str]) -> dict[str, Any]:
    examples = {
        f"{kind} {i}": {"summary": message[:60], "value": {"error": kind, "message": message}}
        for i, (kind, message) in enumerate(pairs)
    }
    return {
        "model": ErrorBody,
        "description": description,
        "content": {JSON: {"examples": examples}},
    }


def error_responses() -> dict[int | str, dict[str, Any]]:
    """The refusals of POST /increment and /increment/batch, with real messages."""
    return {
        400: _error("malformed JSON", _refusal(b'{"number": }')),
        404: _error(
            "unknown model",
            ("unknown_model", "no model named 'countr'; available: counter, counter-post"),
        ),
        413: _error(
            "body too large",
            (
                "body_too_large",
                "the request body is larger than 4194304 bytes (COUNTER_MAX_BODY_BYTES)",
            ),
        ),
        415: _error(
            "not sent as JSON",
            (
                "unsupported_media_type",
                "the body must be JSON sent with Content-Type: application/json, "
                "not 'application/x-www-form-urlencoded'",
            ),
        ),
        422: _error(
            "a number or a field that breaks the input rules",
            _refusal(b'{"number": "-5"}'),
            _refusal(b'{"number": "1e3"}'),
            _refusal('{"number": "١٢٣"}'.encode()),
            _refusal(b'{"number": true}'),
            _refusal(b'{"numbr": "5"}'),
        ),
        503: _error(
            "starting or stopping",
            ("not_ready", "the models are not loaded yet; retry when /readyz is 200"),
        ),
    }


def request_body(schema: type[BaseModel], examples: dict[str, Any]) -> dict[str, Any]:
    """openapi_extra for a route that parses its own body: the schema and named examples."""
    named = {name: {"summary": name, "value": value} for name, value in examples.items()}
    return {
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": schema.model_json_schema(), "examples": named}},
        }
    }


def response(model: type[BaseModel], description: str, **examples: Any) -> dict[str, Any]:
    """A 200 response: its model and named examples."""
    named = {name: {"summary": name, "value": value} for name, value in examples.items()}
    return {"model": model, "description": description, "content": {JSON: {"examples": named}}}


BATCH_EXAMPLE: dict[str, Any] = {
    "results": [
        {**INCREMENT_EXAMPLE, "detail": "none", "steps": []},
        {
            **INCREMENT_EXAMPLE,
            "input": "41",
            "output": "42",
            "detail": "none",
            "steps": [],
            "carry_run": 0,
            "check": {"expected": "42", "correct": True},
        },
    ]
}


def openapi_with_cards(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, with the loaded models' real cards as the /models examples."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    registry: Registry | None = app.state.registry
    if registry is None:
        return schema  # not cached: the examples come once the models are loaded
    cards = [registry.models[name].card.model_dump(mode="json") for name in registry.names]
    default = registry.models[registry.default].card.model_dump(mode="json")
    for path, example in (
        ("/models", {"default": registry.default, "models": cards}),
        ("/models/{name}", default),
    ):
        schema["paths"][path]["get"]["responses"]["200"]["content"][JSON]["example"] = example
    app.openapi_schema = schema
    return schema
