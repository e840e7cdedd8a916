"""GET /models and GET /models/{name}: the model cards, as measured and written by training."""

from fastapi import APIRouter

from app.deps import RegistryDep
from app.errors import unknown_model
from app.registry import Registry
from app.schemas import ErrorBody, ModelList, SkippedModel
from core.card import ModelCard

router = APIRouter(tags=["models"])


def model_list(registry: Registry) -> ModelList:
    """What GET /models answers (and its docs example shows)."""
    return ModelList(
        default=registry.default,
        models=[registry.models[name].card for name in registry.names],
        skipped=[SkippedModel(file=e.path.name, reason=e.reason) for e in registry.skipped],
    )


@router.get("/models", response_model=ModelList)
async def list_models(registry: RegistryDep) -> ModelList:
    """Every model served (its card), which one answers when a request names none, and any
    model found at start-up but skipped for a fault (its file and the reason)."""
    return model_list(registry)


@router.get(
    "/models/{name}",
    response_model=ModelCard,
    responses={404: {"model": ErrorBody, "description": "no model of that name"}},
)
async def get_model(name: str, registry: RegistryDep) -> ModelCard:
    """One model's card: provenance, architecture, recipe, accuracy by length, carry certificate."""
    model = registry.find(name)
    if model is None:
        raise unknown_model(name, registry.names)
    return model.card
