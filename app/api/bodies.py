"""The request bodies: each body's type (a TypedDict, from which /docs derives its schema)
beside its parser, request body bytes -> validated numbers, model name and detail level.

The JSON is read by app.api.json_body and each number by app.api.numbers. Everything else is
refused with a message that says what was wrong and what is accepted.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, NotRequired, cast

from pydantic import ConfigDict, Field, TypeAdapter, WithJsonSchema, with_config
from typing_extensions import TypedDict

from app.api.json_body import JsonFloat, JsonInt, load_json
from app.api.numbers import integral, parse_number
from app.errors import Kind, ServiceError, preview
from app.runtime.answers import DETAILS, DetailAsked
from core.codec import is_ascii_digits


def _kind(value: object) -> str:
    """What a JSON value is, in words."""
    if isinstance(value, JsonInt | JsonFloat):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null"


def _object(data: object, fields: tuple[str, ...], required: str, example: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ServiceError(
            Kind.INVALID_REQUEST,
            f"the body must be a JSON object like {example}, not {_kind(data)}",
        )
    unknown = [key for key in data if key not in fields]
    if unknown:
        raise ServiceError(
            Kind.INVALID_REQUEST,
            f"unknown field {preview(unknown[0])}; accepted fields: {', '.join(fields)}",
        )
    if required not in data:
        raise ServiceError(
            Kind.INVALID_REQUEST, f"missing field {required!r}; send an object like {example}"
        )
    return data


def _optional_text(
    data: dict[str, Any], field: str, choices: tuple[str, ...] | None = None
) -> str | None:
    """An optional string field (null means absent); a JSON number is not a string here."""
    value = data.get(field)
    if value is None:
        return None
    if type(value) is not str or (choices is not None and value not in choices):
        hint = f"one of {', '.join(map(repr, choices))}" if choices else "a model name (a string)"
        shown = preview(value) if type(value) is str else _kind(value)
        raise ServiceError(Kind.INVALID_REQUEST, f"{field} must be {hint}, not {shown}")
    return value


# The request bodies, typed once: each TypedDict is the JSON its parser below accepts (its
# fields, which are required, what each may hold), and /docs shows the schema pydantic derives
# from it (`schema`), with the running limits in place of the "{setting}" marks. The parsers
# read their field names from the same types.

_CLOSED = ConfigDict(extra="forbid")  # a field not listed is refused, as the parsers do

Number = Annotated[
    str | int,
    WithJsonSchema(
        {
            "description": "ASCII digits 0-9 (a string), or a JSON integer >= 0; at most "
            "{max_digits} digits (COUNTER_MAX_DIGITS). Leading zeros are accepted.",
            "oneOf": [
                {
                    "type": "string",
                    "pattern": "^[0-9]+$",
                    "minLength": 1,
                    "maxLength": "{max_digits}",
                },
                {"type": "integer", "minimum": 0},
            ],
        }
    ),
]
ModelName = Annotated[
    str | None, Field(description="a model name from GET /models; null or absent: the default")
]
DetailLevel = Annotated[
    DetailAsked | None,
    Field(
        description="'full': every step with its 10 probabilities; 'digits': every step without "
        "them; 'summary': only the least confident steps; 'none': no steps. 'auto' (the default, "
        "also for null): 'full' up to COUNTER_MAX_DETAIL_DIGITS digits, 'summary' beyond."
    ),
]


@with_config(_CLOSED)
class IncrementRequest(TypedDict):
    """The body of POST /increment."""

    number: Number
    model: NotRequired[ModelName]
    detail: NotRequired[DetailLevel]


@with_config(_CLOSED)
class BatchRequest(TypedDict):
    """The body of POST /increment/batch."""

    numbers: Annotated[
        list[Number],
        Field(
            min_length=1,
            description="one bad item refuses the whole request; numbers x (longest + 1) at "
            "most {max_batch_digits} (COUNTER_MAX_BATCH_DIGITS)",
            json_schema_extra={"maxItems": "{max_batch_items}"},
        ),
    ]
    model: NotRequired[ModelName]
    detail: NotRequired[DetailLevel]


@with_config(_CLOSED)
class CountRequest(TypedDict):
    """The body of POST /count."""

    start: Number
    count: Annotated[int, Field(ge=1, json_schema_extra={"maximum": "{max_count}"})]
    model: NotRequired[ModelName]
    stop_on_error: NotRequired[
        Annotated[bool | None, Field(description="stop at the first wrong answer (default false)")]
    ]


def schema(body: Any, limits: Mapping[str, Any]) -> dict[str, Any]:
    """A body's JSON schema as /docs shows it: derived from its type, each "{setting}" mark
    replaced by the running limit (a bare mark by the number itself)."""
    derived: dict[str, Any] = TypeAdapter(body).json_schema()
    return cast(dict[str, Any], _limited(derived, limits))


def _limited(node: Any, limits: Mapping[str, Any]) -> Any:
    if isinstance(node, dict):
        return {k: _limited(v, limits) for k, v in node.items() if k != "title"}
    if isinstance(node, list):
        return [_limited(v, limits) for v in node]
    if isinstance(node, str) and "{" in node:
        bare = node[1:-1]
        if node == "{" + bare + "}" and bare in limits:
            return limits[bare]
        for name, value in limits.items():
            node = node.replace("{" + name + "}", str(value))
    return node


_INCREMENT_FIELDS = tuple(IncrementRequest.__annotations__)
_BATCH_FIELDS = tuple(BatchRequest.__annotations__)
_COUNT_FIELDS = tuple(CountRequest.__annotations__)

# Named examples for /docs, checked against the types by mypy.
INCREMENT_EXAMPLES: dict[str, IncrementRequest] = {
    "a string of digits": {"number": "1299"},
    "a JSON integer": {"number": 1299},
    "the post's model, past its carry, no steps": {
        "number": "999999999999999999",
        "model": "counter-post",
        "detail": "none",
    },
}
BATCH_EXAMPLES: dict[str, BatchRequest] = {
    "two numbers": {"numbers": ["1299", 41], "detail": "none"}
}
COUNT_EXAMPLES: dict[str, CountRequest] = {
    "watch the post's model break": {
        "start": "999999999999999990",
        "count": 20,
        "model": "counter-post",
        "stop_on_error": True,
    },
    "a proved roll-over": {"start": "9" * 30, "count": 3},
}


@dataclass(frozen=True, slots=True)
class Increment:
    """What POST /increment and POST /increment/batch were asked, after every rule passed."""

    numbers: list[str]
    model: str | None
    detail: str  # as asked: "auto" or a Detail


def parse_increment(body: bytes, max_digits: int) -> Increment:
    """The body of POST /increment: {"number": ..., "model"?: ..., "detail"?: ...}."""
    example = '{"number": "1299"}'
    data = _object(load_json(body), _INCREMENT_FIELDS, "number", example)
    number = parse_number(data["number"], max_digits)
    return Increment(
        [number], _optional_text(data, "model"), _optional_text(data, "detail", DETAILS) or "auto"
    )


def _all_digit_strings(items: list[Any], max_digits: int) -> bool:
    """Every item a string of 1 to max_digits ASCII digits: the usual batch, checked at once
    (several times faster than item by item). Otherwise each item is read
    on its own, so that a refusal names the items at fault."""
    if not all(type(item) is str for item in items):
        return False
    lengths = list(map(len, items))
    if min(lengths) == 0 or max(lengths) > max_digits:
        return False
    return is_ascii_digits("".join(items))


def parse_batch(body: bytes, max_digits: int, max_items: int, max_padded: int) -> Increment:
    """The body of POST /increment/batch: {"numbers": [...], ...}; one bad item refuses all."""
    example = '{"numbers": ["1299", "41"]}'
    data = _object(load_json(body), _BATCH_FIELDS, "numbers", example)
    items = data["numbers"]
    if not isinstance(items, list) or not items:
        raise ServiceError(
            Kind.INVALID_REQUEST, f"numbers must be a non-empty array, like {example}"
        )
    if len(items) > max_items:
        raise ServiceError(
            Kind.TOO_MANY_ITEMS,
            f"numbers has {len(items)} items, more than the limit of {max_items} "
            "(COUNTER_MAX_BATCH_ITEMS)",
        )
    numbers: list[str] = items
    if not _all_digit_strings(items, max_digits):
        numbers, problems = [], []
        for index, item in enumerate(items):
            try:
                numbers.append(parse_number(item, max_digits, f"numbers[{index}]"))
            except ServiceError as exc:
                problems.append(exc.message)
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise ServiceError(Kind.INVALID_NUMBER, "; ".join(problems[:3]) + more)
    padded = len(numbers) * (max(map(len, numbers)) + 1)
    if padded > max_padded:
        raise ServiceError(
            Kind.BATCH_TOO_LARGE,
            f"{len(numbers)} numbers padded to the longest ({padded} digit steps in all) exceed "
            f"the limit of {max_padded} (COUNTER_MAX_BATCH_DIGITS); send long numbers in smaller "
            "batches",
        )
    return Increment(
        numbers, _optional_text(data, "model"), _optional_text(data, "detail", DETAILS) or "auto"
    )


@dataclass(frozen=True, slots=True)
class Count:
    """What POST /count was asked, after every rule passed."""

    start: str
    count: int
    model: str | None
    stop_on_error: bool


def parse_count(body: bytes, max_digits: int, max_count: int) -> Count:
    """The body of POST /count: {"start": ..., "count": N, "model"?: ..., "stop_on_error"?: ...}."""
    example = '{"start": "99999990", "count": 20}'
    data = _object(load_json(body), _COUNT_FIELDS, "start", example)
    start = parse_number(data["start"], max_digits, "start")
    if "count" not in data:
        raise ServiceError(
            Kind.INVALID_REQUEST, f"missing field 'count'; send an object like {example}"
        )
    count = data["count"]
    if isinstance(count, JsonFloat):
        count = JsonInt(integral(count, 12) or count) if len(count) <= 40 else count
    digits_ok = isinstance(count, JsonInt) and count.isdigit() and len(count) <= 12
    if not digits_ok or not 1 <= int(str(count)) <= max_count:
        shown = preview(str(count), 20) if isinstance(count, JsonInt | JsonFloat) else _kind(count)
        raise ServiceError(
            Kind.INVALID_REQUEST,
            f"count must be a whole number from 1 to {max_count} (COUNTER_MAX_COUNT), not {shown}",
        )
    stop = data.get("stop_on_error")
    if stop is not None and type(stop) is not bool:
        raise ServiceError(
            Kind.INVALID_REQUEST, f"stop_on_error must be true or false, not {_kind(stop)}"
        )
    return Count(start, int(count), _optional_text(data, "model"), bool(stop))
