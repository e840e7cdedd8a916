"""The shapes of the service's answers: typed once, written by orjson, documented from the types.

The engine builds these TypedDicts (plain dicts at run time, the fastest thing orjson writes,
numpy arrays included), and /docs shows the JSON schema pydantic derives from the same types,
so the answers and their documentation cannot drift apart. Fields holding numpy values say so
in their type and carry the JSON schema of what orjson writes for them.
"""

from typing import Annotated, Any, Literal, NotRequired, get_args

import numpy as np
import numpy.typing as npt
from pydantic import ConfigDict, Field, SkipValidation, TypeAdapter, WithJsonSchema, with_config
from typing_extensions import TypedDict

from app.errors import Kind, ServiceError

Detail = Literal["full", "digits", "summary", "none"]
# The detail levels a request may ask, listed here only: the schemas and the parser derive theirs
# from these.
DetailAsked = Literal["auto", Detail]
DETAILS: tuple[str, ...] = get_args(DetailAsked)
_LISTED: frozenset[str] = frozenset({"full", "digits"})

# float32 values (numpy scalars and rows) as orjson writes them: JSON numbers.
F32 = Annotated[float | np.float32, SkipValidation, WithJsonSchema({"type": "number"})]
Row = Annotated[
    npt.NDArray[np.float32],
    SkipValidation,
    WithJsonSchema({"type": "array", "items": {"type": "number"}, "minItems": 10, "maxItems": 10}),
]
_NUMPY = ConfigDict(arbitrary_types_allowed=True)


@with_config(_NUMPY)
class Step(TypedDict):
    """One digit position, least significant first (position 0 is the units digit)."""

    position: int
    input_digit: int
    output_digit: Annotated[int, Field(description="the digit the model chose (its argmax)")]
    probability: Annotated[F32, Field(description="the probability of the chosen digit")]
    probabilities: NotRequired[
        Annotated[Row, Field(description="all 10 digits' probabilities; not with detail 'digits'")]
    ]
    extra: Annotated[
        bool, Field(description="true on the extra zero step that holds a carry out (999 -> 1000)")
    ]


class Flags(TypedDict):
    """What to distrust. The carry and length flags come from the model card, before the answer."""

    beyond_reliable_carry: Annotated[
        bool,
        Field(description="more trailing nines than the proved reliable carry length: no proof"),
    ]
    beyond_tested_length: Annotated[
        bool, Field(description="longer than every length the card's accuracy test found exact")
    ]
    known_failing_carry: Annotated[
        bool,
        Field(description="the card's carry scan found wrong answers for this many trailing nines"),
    ]
    low_confidence: Annotated[
        bool, Field(description="some step's probability is below COUNTER_LOW_CONFIDENCE")
    ]
    low_confidence_count: int
    low_confidence_steps: Annotated[list[int], Field(description="their positions (the first 20)")]


class Check(TypedDict):
    """The exact n + 1 by schoolbook arithmetic against the model's answer."""

    correct: bool
    expected: Annotated[
        str | None,
        Field(description="the exact n + 1 when the model got it wrong; null when right"),
    ]


class ModelRef(TypedDict):
    """Which model answered."""

    name: str
    version: str


@with_config(_NUMPY)
class Answer(TypedDict):
    """n + 1 as the model produced it, digit by digit, with whether it is proved right."""

    input: Annotated[
        str,
        Field(
            description="the number as given; beyond COUNTER_ECHO_DIGITS digits a short preview "
            "(input_digits has its length)"
        ),
    ]
    input_digits: int
    output: Annotated[str, Field(description="the model's answer, canonical: no leading zeros")]
    detail: Detail
    steps: list[Step]
    min_probability: F32
    min_probability_position: int
    carry_run: Annotated[
        int, Field(description="trailing nines of the input: how far the carry travels")
    ]
    reliable_carry_length: Annotated[
        int | Literal["unbounded"],
        Field(
            description="proved (and re-proved by this service at start): every input with at "
            "most this many trailing nines is answered right, at every length; -1: none"
        ),
    ]
    proved: Annotated[
        bool,
        Field(
            description="true exactly when the model's proof covers this input: then it is right"
        ),
    ]
    tested_length: Annotated[
        int, Field(description="from the card: every tested length up to this was exact")
    ]
    flags: Flags
    warnings: Annotated[
        list[str], Field(description="every flag, any missing proof and any wrong answer, in words")
    ]
    check: Check
    model: ModelRef


class BatchAnswer(TypedDict):
    """One answer per number, in the order sent."""

    results: list[Answer]


class CountLine(TypedDict):
    """One number of a count: the model's n + 1, fed back as the next input."""

    index: Annotated[int, Field(description="1 for the first answer")]
    input: str
    output: Annotated[str, Field(description="the model's answer: the next input")]
    expected: Annotated[str, Field(description="the exact n + 1")]
    correct: bool
    proved: bool
    carry_run: int
    flags: Flags
    warnings: list[str]


# Why a count stopped (a client that goes away is sent nothing more: it has no reason line).
CountReason = Literal["count", "error", "time_limit", "shutdown"]


class CountEnd(TypedDict):
    """The last line of a count: why it stopped."""

    done: Literal[True]
    reason: Annotated[
        CountReason,
        Field(
            description="count: N numbers sent; error: stop_on_error met a wrong answer; "
            "time_limit: the count ran COUNTER_MAX_COUNT_SECONDS; shutdown: the service is "
            "stopping (count on from the last number elsewhere)"
        ),
    ]
    sent: int
    wrong: int


def json_schema(shape: Any) -> dict[str, Any]:
    """The JSON schema of an answer type, as /docs shows it (definitions inlined)."""
    schema: dict[str, Any] = TypeAdapter(shape).json_schema(
        mode="serialization", ref_template="#/components/schemas/{model}"
    )
    return schema


def resolve_detail(asked: str, digits: int, max_listed: int) -> Detail:
    """'auto' lists every step up to max_listed digits per request, else summarizes."""
    if asked == "auto":
        return "full" if digits <= max_listed else "summary"
    if asked in _LISTED and digits > max_listed:
        raise ServiceError(
            Kind.TOO_MUCH_DETAIL,
            f"detail {asked!r} lists every step, allowed up to {max_listed} digits per request "
            f"(COUNTER_MAX_DETAIL_DIGITS); this request has {digits}: ask 'summary' or 'none'",
        )
    detail: Detail = asked  # type: ignore[assignment]  # checked against DETAILS by the parser
    return detail
