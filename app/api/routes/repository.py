"""Triton's model repository extension over REST: the index (public), load and unload (an
operator's, with the bearer token). What each does, and when it is allowed:
app.runtime.repository."""

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, StrictBool

from app.api import openapi
from app.errors import Kind, ServiceError
from app.runtime.repository import Repository, authorize

router = APIRouter(prefix="/v2/repository", tags=["Model repository (Triton's extension)"])


class IndexRequest(BaseModel):
    ready: StrictBool = False  # true: only the models ready to serve (0 or "yes" is refused)


class IndexEntry(BaseModel):
    name: str
    version: str
    state: Literal["READY", "UNAVAILABLE"]
    reason: str


class Changed(BaseModel):
    name: str
    state: Literal["READY", "UNAVAILABLE"]


_INDEX_EXAMPLE = [
    {"name": "counter", "version": "2.0.0", "state": "READY", "reason": ""},
    {"name": "counter-post", "version": "2.0.0", "state": "READY", "reason": ""},
]


def _ok(example: object) -> dict[int | str, dict[str, object]]:
    return {200: {"content": {"application/json": {"example": example}}}}


# Load and unload read no body (Triton's optional "parameters" are not used): {} is the example.
_NO_BODY = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {
                "schema": {"type": "object"},
                "examples": {"no parameters": {"value": {}}},
            }
        },
    }
}
_CHANGE_ERRORS = (400, 401, 403, 404, 413, 422, 503)


def _repository(request: Request) -> Repository:
    repository: Repository | None = getattr(request.app.state, "repository", None)
    if repository is None:
        raise ServiceError(Kind.NOT_READY, "the service is starting; retry shortly")
    return repository


def _operator(request: Request) -> Repository:
    authorize(request.headers.get("authorization"), request.app.state.settings)
    return _repository(request)


@router.post(
    "/index",
    summary="Repository index",
    responses={**openapi.v2_errors(400, 404, 413, 422, 503), **_ok(_INDEX_EXAMPLE)},
)
async def index(
    request: Request,
    asked: Annotated[
        IndexRequest | None,
        Body(openapi_examples={"only the ready models": {"value": {"ready": True}}}),
    ] = None,
) -> list[IndexEntry]:
    """Every model served (READY) and every card in the models folder not served
    (UNAVAILABLE, with the reason when a check refused it)."""
    entries = _repository(request).index()
    ready_only = asked is not None and asked.ready
    return [
        IndexEntry(name=e.name, version=e.version, state=e.state, reason=e.reason)  # type: ignore[arg-type]
        for e in entries
        if not ready_only or e.state == "READY"
    ]


@router.post(
    "/models/{name}/load",
    summary="Load or reload a model (operator)",
    responses={
        **openapi.v2_errors(*_CHANGE_ERRORS),
        **_ok({"name": "counter-post", "state": "READY"}),
    },
    openapi_extra=_NO_BODY,
)
async def load(request: Request, name: str) -> Changed:
    """Read the model's card and graph, run every check the start runs, and swap it in; on a
    failed check, 400 with the reason, and the version served before keeps serving.
    Needs `Authorization: Bearer <COUNTER_ADMIN_TOKEN>` and COUNTER_MODEL_CONTROL=explicit."""
    model = await _operator(request).load(name)
    return Changed(name=model.card.name, state="READY")


@router.post(
    "/models/{name}/unload",
    summary="Unload a model (operator)",
    responses={
        **openapi.v2_errors(*_CHANGE_ERRORS),
        **_ok({"name": "counter-post", "state": "UNAVAILABLE"}),
    },
    openapi_extra=_NO_BODY,
)
async def unload(request: Request, name: str) -> Changed:
    """Stop serving the model (404 from then on) once its waiting requests are answered.
    Needs `Authorization: Bearer <COUNTER_ADMIN_TOKEN>` and COUNTER_MODEL_CONTROL=explicit."""
    await _operator(request).unload(name)
    return Changed(name=name, state="UNAVAILABLE")
