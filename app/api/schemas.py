"""The shapes of the operator endpoints (the model cards, health): pydantic, off the hot path.

The answers of the model endpoints are TypedDicts (app.runtime.answers), written by orjson.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.runtime.models import LoadedModel, Registry, ServingCheck
from core.card import ModelCard


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    return ServedModel(**model.card.model_dump(), serving=model.check)


def model_list(registry: Registry) -> ModelList:
    """What GET /models answers."""
    return ModelList(
        default=registry.default,
        models=[served(registry.models[name]) for name in registry.names],
        skipped=[SkippedModel(file=e.path.name, reason=e.reason) for e in registry.skipped],
    )
