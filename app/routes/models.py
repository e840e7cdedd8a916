"""GET /models and GET /models/{name}: the model cards, and what the service checked of each."""

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from app.errors import unknown_model
from app.exchange import service_of
from app.registry import LoadedModel, Registry
from app.schemas import ModelList, ServedModel, ServingCheck, SkippedModel
from app.service import CounterService

router = APIRouter(tags=["models"])


def _ready(request: Request) -> CounterService:
    service = service_of(request)
    service.model(None)  # 503 until ready
    return service


ServiceDep = Annotated[CounterService, Depends(_ready)]


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


@router.get("/models", response_model=ModelList)
async def list_models(service: ServiceDep) -> ModelList:
    """Every model served (its card and what the service checked), the one that answers when a
    request names none, and any model found at start-up but skipped for a fault (and why)."""
    return model_list(service.registry)


@router.get("/models/{name}", response_model=ServedModel)
async def get_model(name: str, service: ServiceDep) -> ServedModel:
    """One model's card (provenance, recipe, accuracy by length, proof, carry scan) and the
    service's own checks: the onnxruntime it runs, its tanh error, the proof re-run."""
    model = service.registry.find(name)
    if model is None:
        raise unknown_model(name, service.registry.names)
    return served(model)
