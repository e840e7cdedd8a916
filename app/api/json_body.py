"""A request body's JSON, read: orjson for the usual body, the standard parser for a body with
a number in it, keeping each number's text (JsonInt, JsonFloat) so that a 100 000-digit integer
costs no int() call and never meets Python's int-string limit. Malformed JSON, text not in UTF-8
or absurd nesting is a 400 that says what was wrong, never a 500.
"""

import json
from typing import Any

import orjson

from app.errors import Kind, ServiceError


class JsonInt(str):
    """A JSON integer literal, kept as the text the client sent."""


class JsonFloat(str):
    """A JSON number with a fraction or an exponent: never a valid input."""


def _no_constants(name: str) -> Any:
    raise ServiceError(
        Kind.MALFORMED_JSON, f"the body is not valid JSON: {name} is not a JSON value"
    )


def _plain(data: Any) -> bool:
    """An object whose values are strings, null, booleans or arrays of those: no JSON number.

    Such a body reads the same from orjson as from the standard parser, so the usual requests
    ({"number": "1299"}, {"numbers": ["1299", "41"]}) are parsed once. A number needs the
    standard parser, which keeps its text (JsonInt, JsonFloat).
    """
    return type(data) is dict and all(
        type(v) is str
        or v is None
        or type(v) is bool
        or (type(v) is list and all(type(i) is str or i is None or type(i) is bool for i in v))
        for v in data.values()
    )


def load_json(body: bytes) -> Any:
    """Parse the body; malformed JSON, text not in UTF-8 or absurd nesting is a 400, never a 500."""
    if not body:
        raise ServiceError(
            Kind.MALFORMED_JSON, 'the body is empty; send a JSON object like {"number": "1299"}'
        )
    try:
        data = orjson.loads(body)
        if _plain(data):
            return data
    except orjson.JSONDecodeError:
        pass  # the standard parser below gives the exact error, or reads what orjson cannot
    try:
        # Decoded here: json.loads(bytes) would also take UTF-16 and UTF-32. A UTF-8 byte
        # order mark is tolerated, as it always was.
        text = body.decode("utf-8-sig")
        return json.loads(
            text, parse_int=JsonInt, parse_float=JsonFloat, parse_constant=_no_constants
        )
    except json.JSONDecodeError as exc:
        reason = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    except UnicodeDecodeError:
        reason = "it is not UTF-8 text"
    except RecursionError:
        reason = "it is nested too deeply"
    raise ServiceError(
        Kind.MALFORMED_JSON,
        f'the body is not valid JSON ({reason}); send an object like {{"number": "1299"}}',
    )
