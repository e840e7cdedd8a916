"""The request bodies are typed once: /docs shows the schema derived from each body's type with
the running limits, and the parser takes every field and example the schema shows."""

from typing import Any

import jsonschema
import orjson
import pytest

from app.api import openapi
from app.api.bodies import (
    BATCH_EXAMPLES,
    COUNT_EXAMPLES,
    INCREMENT_EXAMPLES,
    parse_batch,
    parse_count,
    parse_increment,
)
from app.errors import ServiceError
from app.settings import Settings

SETTINGS = Settings(max_digits=7, max_batch_items=3, max_batch_digits=40, max_count=9)
SCHEMAS = openapi.request_schemas(SETTINGS)
PARSERS: dict[str, Any] = {
    "IncrementRequest": lambda body: parse_increment(body, SETTINGS.max_digits),
    "BatchRequest": lambda body: parse_batch(
        body, SETTINGS.max_digits, SETTINGS.max_batch_items, SETTINGS.max_batch_digits
    ),
    "CountRequest": lambda body: parse_count(body, SETTINGS.max_digits, SETTINGS.max_count),
}
EXAMPLES: dict[str, dict[str, Any]] = {
    "IncrementRequest": dict(INCREMENT_EXAMPLES),
    "BatchRequest": dict(BATCH_EXAMPLES),
    "CountRequest": dict(COUNT_EXAMPLES),
}


def test_the_schemas_carry_the_running_limits() -> None:
    number = SCHEMAS["IncrementRequest"]["properties"]["number"]
    assert number["oneOf"][0]["maxLength"] == 7
    assert "at most 7 digits" in number["description"]
    numbers = SCHEMAS["BatchRequest"]["properties"]["numbers"]
    assert (numbers["minItems"], numbers["maxItems"]) == (1, 3)
    assert "at most 40" in numbers["description"]
    count = SCHEMAS["CountRequest"]["properties"]["count"]
    assert (count["minimum"], count["maximum"]) == (1, 9)
    assert SCHEMAS["CountRequest"]["required"] == ["start", "count"]


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_field_the_schema_shows_is_taken_and_no_other(name: str) -> None:
    schema = SCHEMAS[name]
    assert schema["additionalProperties"] is False
    bases: dict[str, dict[str, Any]] = {
        "IncrementRequest": {"number": "12"},
        "BatchRequest": {"numbers": ["12"]},
        "CountRequest": {"start": "12", "count": 2},
    }
    base = bases[name]
    for field in schema["properties"]:
        PARSERS[name](orjson.dumps({**base, field: base.get(field)}))  # null: absent
    with pytest.raises(ServiceError, match="unknown field 'colour'"):
        PARSERS[name](orjson.dumps({**base, "colour": "red"}))


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_each_example_fits_the_schema_and_the_parser_takes_it(name: str) -> None:
    big = Settings()
    schema = openapi.request_schemas(big)[name]
    for example in EXAMPLES[name].values():
        jsonschema.Draft202012Validator(schema).validate(example)
        body = orjson.dumps(example)
        if name == "IncrementRequest":
            parse_increment(body, big.max_digits)
        elif name == "BatchRequest":
            parse_batch(body, big.max_digits, big.max_batch_items, big.max_batch_digits)
        else:
            parse_count(body, big.max_digits, big.max_count)
