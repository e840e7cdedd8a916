"""GET /models and GET /models/{name}: the model cards, as measured and written by training."""

from fastapi import APIRouter

from app.card import ModelCard
from app.deps import RegistryDep
from app.errors import InputError
from app.schemas import ErrorBody, ModelList

router = APIRouter(tags=["models"])


@router.get("/models", response_model=ModelList)
async def list_models(registry: RegistryDep) -> ModelList:
    """Every model served (its card), and which one answers when a request names none."""
    return ModelList(
        default=registry.default, models=[registry.models[n].card for n in registry.names]
    )


@router.get(
    "/models/{name}",
    response_model=ModelCard,
    responses={404: {"model": ErrorBody, "description": "no model of that name"}},
)
async def get_model(name: str, registry: RegistryDep) -> ModelCard:
    """One model's card: provenance, architecture, recipe, accuracy by length, carry certificate."""
    model = registry.find(name)
    if model is None:
        raise InputError(
            404, "unknown_model", f"no model named {name!r}; available: {', '.join(registry.names)}"
        )
    return model.card
