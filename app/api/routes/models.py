"""GET /models and GET /models/{name}: the model cards, and what the service checked of each."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from app.api import openapi
from app.api.schemas import ModelList, ServedModel, model_list, served
from app.errors import unknown_model
from app.http.exchange import service_of
from app.runtime.service import CounterService

router = APIRouter(tags=["models"])


def _ready(request: Request) -> CounterService:
    service = service_of(request)
    service.model(None)  # 503 until ready
    return service


ServiceDep = Annotated[CounterService, Depends(_ready)]


@router.get("/models", response_model=ModelList, responses=openapi.operator_errors(503))
async def list_models(service: ServiceDep) -> ModelList:
    """Every model served (its card and what the service checked), the one that answers when a
    request names none, and any model found at start-up but skipped for a fault (and why)."""
    return model_list(service.registry)


@router.get(
    "/models/{name}", response_model=ServedModel, responses=openapi.operator_errors(404, 503)
)
async def get_model(name: str, service: ServiceDep) -> ServedModel:
    """One model's card (provenance, recipe, accuracy by length, proof, carry scan) and the
    service's own checks: the onnxruntime it runs, its activation error, the proof re-run."""
    model = service.registry.find(name)
    if model is None:
        raise unknown_model(name, service.registry.names)
    return served(model)
