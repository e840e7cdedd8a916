"""The shapes of the operator endpoints (the model cards, health): pydantic, off the hot path.

The answers of the model endpoints are TypedDicts (app.runtime.answers), written by orjson.
"""

from dataclasses import asdict
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.runtime.models import LoadedModel, Registry
from core.card import ModelCard


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DecisionCheck(_Strict):
    """The card's decided carry length as this service checked it at load."""

    result: Literal["checked"]
    proved_carry_length: int = Field(description="K, re-derived from the certificate")
    seconds: float = Field(description="the certificate's one-pass check")
    refutation: str | None = Field(description="the refuting input as this graph answered it")


class ServingCheck(_Strict):
    """What this service verified itself when it loaded the model, beside what the card says."""

    onnxruntime: str = Field(description="the onnxruntime running here (the card has its own)")
    activation_error_measured: float | None = Field(
        description="the largest tanh or sigmoid error of this onnxruntime's kernels for the "
        "model's op (RNN, GRU or LSTM), measured through the op itself on a dense grid; the "
        "proof allows the card's certificate.tanh_error_bound; null when the card claims no proof"
    )
    proved_carry_length: int | Literal["unbounded"] = Field(
        description="the proof re-run on the loaded weights: at least the card's claim"
    )
    proof_margin: float | None
    proof_seconds: float
    warm_up_answers: int = Field(description="answers checked against exact arithmetic")
    decision: DecisionCheck | None = Field(
        default=None, description="the card's decided carry length, checked here (null: none)"
    )
    carry_attractor: bool | None = Field(
        default=None,
        description="the card's dynamics.carry_attractor re-derived from the loaded weights "
        "(a stable fixed point of the map 'read a 9' that reads out the carry); null when the "
        "card makes no such claim",
    )


class ServedModel(ModelCard):
    """A model card as the service serves it: the card, and what the service checked."""

    serving: ServingCheck


class SkippedModel(_Strict):
    """A model file that was found but not served: a fault outside the default model."""

    file: str = Field(description="the card or .onnx file at fault, in the models folder")
    reason: str


class ModelList(_Strict):
    """Every model served, the one used when a request names none, and any model skipped."""

    default: str
    models: list[ServedModel]
    skipped: list[SkippedModel] = Field(
        default_factory=list, description="models found at start-up but not served, and why"
    )


class Health(_Strict):
    """Liveness or readiness."""

    status: Literal["ok", "ready", "not ready"]
    models: list[str] = Field(default_factory=list)
    reason: str | None = None


def served(model: LoadedModel) -> ServedModel:
    """A card with the service's own checks beside it."""
    return ServedModel(
        **model.card.model_dump(), serving=ServingCheck.model_validate(asdict(model.check))
    )


def model_list(registry: Registry) -> ModelList:
    """What GET /models answers."""
    return ModelList(
        default=registry.default,
        models=[served(registry.models[name]) for name in registry.names],
        skipped=[SkippedModel(file=e.path.name, reason=e.reason) for e in registry.skipped],
    )
