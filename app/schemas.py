"""The API's request and response shapes, with examples: what /docs shows and tests check.

The request path does not run these models (the body is parsed by app.inputs and the answer
is written by orjson, which keeps a request fast); tests validate real responses against
them, so the documentation cannot drift from what the service sends. Examples: app.docs.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.inputs import Detail, DetailAsked
from core.card import ModelCard

_DETAIL_HELP = (
    "'full': every step with its 10 probabilities; 'digits': every step without them; "
    "'summary': only the least confident steps; 'none': no steps. 'auto' (default): 'full' up to "
    "COUNTER_MAX_DETAIL_DIGITS digits per request, 'summary' beyond."
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IncrementRequest(_Strict):
    """Add one to a number. Leading zeros are accepted; the output drops them ("007" -> "8")."""

    number: str | int = Field(
        description="ASCII digits 0-9 (a string), or a JSON integer >= 0", examples=["1476233999"]
    )
    model: str | None = Field(
        None, description="a model name from GET /models; default: the default"
    )
    detail: DetailAsked = Field("auto", description=_DETAIL_HELP)


class BatchRequest(_Strict):
    """Add one to many numbers in one model run. One bad item refuses the whole request (422)."""

    numbers: list[str | int] = Field(min_length=1, examples=[["1299", "41"]])
    model: str | None = None
    detail: DetailAsked = Field("auto", description=_DETAIL_HELP)


class Step(_Strict):
    """One digit position, least significant first (position 0 is the units digit)."""

    position: int
    input_digit: int
    output_digit: int = Field(description="the digit the model chose (its argmax)")
    probability: float = Field(description="the probability of the chosen digit")
    probabilities: list[float] | None = Field(
        None, min_length=10, max_length=10, description="all 10 digits; absent with detail 'digits'"
    )
    extra: bool = Field(
        description="true on the extra zero step that holds a carry out (999 -> 1000)"
    )


class Flags(_Strict):
    """What to distrust. The carry and length flags come from the model card, before the answer."""

    beyond_reliable_carry: bool = Field(
        description="more trailing nines than the card's reliable carry"
    )
    beyond_tested_length: bool = Field(description="longer than every length the card tested exact")
    low_confidence: bool = Field(
        description="some step's probability is below COUNTER_LOW_CONFIDENCE"
    )
    low_confidence_count: int
    low_confidence_steps: list[int] = Field(description="their positions (the first 20)")


class Check(_Strict):
    """The exact n + 1 by schoolbook arithmetic, and whether the model matched it."""

    expected: str
    correct: bool


class ModelRef(_Strict):
    """Which model answered."""

    name: str
    version: str


class IncrementResponse(_Strict):
    """n + 1 as the model produced it, digit by digit, with its confidence and honest flags."""

    input: str = Field(description="the number as given (digits)")
    output: str = Field(description="the model's answer, canonical: no leading zeros")
    detail: Detail
    steps: list[Step]
    min_probability: float
    min_probability_position: int
    carry_run: int = Field(description="trailing nines of the input: how far the carry travels")
    reliable_carry_length: int | Literal["unbounded"] = Field(
        description="from the card: every carry of up to this many nines is exact; "
        "'unbounded' when proved for all"
    )
    carry_certified: bool = Field(description="true when a proof covers every carry length")
    tested_length: int = Field(
        description="from the card: every tested length up to this was exact"
    )
    flags: Flags
    warnings: list[str] = Field(description="the flags and any wrong answer, in plain words")
    check: Check
    model: ModelRef


class BatchResponse(_Strict):
    """One result per number, in the order sent."""

    results: list[IncrementResponse]


class SkippedModel(_Strict):
    """A model file that was found but not served: a fault outside the default model."""

    file: str = Field(description="the card or .onnx file at fault, in the models folder")
    reason: str


class ModelList(_Strict):
    """Every model served, the one used when a request names none, and any model skipped."""

    default: str
    models: list[ModelCard]
    skipped: list[SkippedModel] = Field(
        default_factory=list, description="models found at start-up but not served, and why"
    )


class Health(_Strict):
    """Liveness or readiness."""

    status: Literal["ok", "ready", "not ready"]
    models: list[str] = Field(default_factory=list)
    reason: str | None = None


class ErrorBody(_Strict):
    """Every refusal: a short kind and a message saying what was wrong and what is accepted."""

    error: str = Field(examples=["invalid_number"])
    message: str
