"""What /docs shows beyond the schemas: request and response examples for every endpoint.

Error examples are produced by the real rules (app.inputs, app.errors, app.limits), so their
messages are the ones a client gets; the unknown-model and body-too-large examples are made
again from the loaded models and the settings once the service is ready (openapi_with_cards).
Response examples are checked against the live model by the tests.
"""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from app.errors import InputError, unknown_model
from app.inputs import parse_increment
from app.limits import too_large
from app.registry import Registry
from app.routes.models import model_list
from app.schemas import ErrorBody
from app.settings import Settings

JSON = "application/json"


# Real answers of the shipped models (v1.0.0), as the service sent them.
INCREMENT_EXAMPLE: dict[str, Any] = {
    "input": "1299",
    "output": "1300",
    "detail": "full",
    "steps": [
        {
            "position": 0,
            "input_digit": 9,
            "output_digit": 0,
            "probability": 0.99999976,
            "probabilities": [
                0.99999976,
                5.884146e-09,
                4.9614197e-15,
                1.8168288e-09,
                1.4996294e-11,
                1.4681884e-11,
                3.0310815e-10,
                1.5808941e-11,
                2.816721e-08,
                2.7437798e-07,
            ],
            "extra": False,
        },
        {
            "position": 1,
            "input_digit": 9,
            "output_digit": 0,
            "probability": 0.9999999,
            "probabilities": [
                0.9999999,
                5.576792e-09,
                6.0873526e-15,
                3.4712129e-09,
                2.6229813e-11,
                1.1419988e-11,
                3.3656006e-10,
                1.6463489e-11,
                5.5166613e-08,
                1.16064676e-07,
            ],
            "extra": False,
        },
        {
            "position": 2,
            "input_digit": 2,
            "output_digit": 3,
            "probability": 0.9999577,
            "probabilities": [
                4.7450322e-07,
                5.1286283e-14,
                4.1788957e-05,
                0.9999577,
                4.360663e-10,
                3.431267e-10,
                8.6094413e-13,
                6.4796064e-11,
                9.857876e-11,
                7.407369e-15,
            ],
            "extra": False,
        },
        {
            "position": 3,
            "input_digit": 1,
            "output_digit": 1,
            "probability": 0.9999951,
            "probabilities": [
                1.3480339e-07,
                0.9999951,
                3.5203682e-06,
                5.6576913e-15,
                3.9125606e-11,
                1.309969e-07,
                3.1319027e-11,
                2.387603e-07,
                1.1763434e-07,
                7.4458313e-07,
            ],
            "extra": False,
        },
        {
            "position": 4,
            "input_digit": 0,
            "output_digit": 0,
            "probability": 0.99999774,
            "probabilities": [
                0.99999774,
                1.0662317e-07,
                8.318385e-09,
                9.785698e-07,
                2.4908253e-12,
                4.663042e-07,
                7.599517e-09,
                3.4916736e-11,
                4.4341584e-07,
                2.4867254e-07,
            ],
            "extra": True,
        },
    ],
    "min_probability": 0.9999577,
    "min_probability_position": 2,
    "carry_run": 2,
    "reliable_carry_length": "unbounded",
    "carry_certified": True,
    "tested_length": 100000,
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
    "input": "1099999999999",
    "output": "1000000000000",
    "detail": "none",
    "steps": [],
    "min_probability": 0.65820587,
    "min_probability_position": 11,
    "carry_run": 11,
    "reliable_carry_length": 10,
    "carry_certified": False,
    "tested_length": 100000,
    "flags": {
        "beyond_reliable_carry": True,
        "beyond_tested_length": False,
        "low_confidence": True,
        "low_confidence_count": 2,
        "low_confidence_steps": [11, 12],
    },
    "warnings": [
        "The input ends in 11 nines, more than this model's reliable carry length (10): "
        "the carry may be wrong.",
        "2 step(s) chose a digit with probability below 0.9, at position(s) 11, 12 "
        "(position 0 is the units digit).",
        "The model's answer is wrong: 1099999999999 + 1 = 1100000000000.",
    ],
    "check": {"expected": "1100000000000", "correct": False},
    "model": {"name": "counter-post", "version": "1.0.0"},
}


def _refusal(body: bytes) -> tuple[str, str]:
    try:
        parse_increment(body, max_digits=1_000_000)
    except InputError as exc:
        return exc.kind, exc.message
    raise AssertionError(f"{body!r} was meant to be refused")


def _pair(error: InputError) -> tuple[str, str]:
    return error.kind, error.message


def _examples(*pairs: tuple[str, str]) -> dict[str, Any]:
    return {
        f"{kind} {i}": {"summary": message[:60], "value": {"error": kind, "message": message}}
        for i, (kind, message) in enumerate(pairs)
    }


def _error(description: str, *pairs: tuple[str, str]) -> dict[str, Any]:
    examples = _examples(*pairs)
    return {
        "model": ErrorBody,
        "description": description,
        "content": {JSON: {"examples": examples}},
    }


_MISSPELT = "countr"
_DEFAULT_BODY_LIMIT: int = Settings.model_fields["max_body_bytes"].default


def error_responses() -> dict[int | str, dict[str, Any]]:
    """The refusals of POST /increment and /increment/batch, with real messages."""
    return {
        400: _error("malformed JSON", _refusal(b'{"number": }')),
        # Until the models are loaded: the shipped models and the default limit.
        404: _error("unknown model", _pair(unknown_model(_MISSPELT, ["counter", "counter-post"]))),
        413: _error("body too large", _pair(too_large(_DEFAULT_BODY_LIMIT))),
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
            "min_probability": 0.9999528,
            "min_probability_position": 1,
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
    default = registry.models[registry.default].card.model_dump(mode="json")
    for path, example in (
        ("/models", model_list(registry).model_dump(mode="json")),
        ("/models/{name}", default),
    ):
        schema["paths"][path]["get"]["responses"]["200"]["content"][JSON]["example"] = example
    settings: Settings = app.state.settings
    live = {
        "404": unknown_model(_MISSPELT, registry.names),
        "413": too_large(settings.max_body_bytes),
    }
    for path in ("/increment", "/increment/batch"):
        for status, error in live.items():
            content = schema["paths"][path]["post"]["responses"][status]["content"][JSON]
            content["examples"] = _examples(_pair(error))
    app.openapi_schema = schema
    return schema
