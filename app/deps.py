"""What routes take from the running app: settings, the registry (once ready), engine options.

Plain functions of the request for the hot path (/increment), and an Annotated dependency
(RegistryDep) for the others, so their signatures read as sentences.
"""

from typing import Annotated

import anyio
from fastapi import Depends, Request

from app.batcher import Batcher
from app.engine import EngineOptions
from app.errors import InputError
from app.registry import Registry
from app.settings import Settings


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def options_of(request: Request) -> EngineOptions:
    options: EngineOptions = request.app.state.engine_options
    return options


def batcher_of(request: Request, model: str) -> Batcher:
    batcher: Batcher = request.app.state.batchers[model]
    return batcher


def long_runs_of(request: Request) -> anyio.CapacityLimiter:
    limiter: anyio.CapacityLimiter = request.app.state.long_runs
    return limiter


def ready_registry(request: Request) -> Registry:
    """The registry once every model is loaded and warm; 503 before (and while stopping)."""
    registry: Registry | None = request.app.state.registry
    if registry is None or not request.app.state.ready:
        raise InputError(
            503, "not_ready", "the models are not loaded yet; retry when /readyz is 200"
        )
    return registry


async def _registry(request: Request) -> Registry:
    return ready_registry(request)


RegistryDep = Annotated[Registry, Depends(_registry)]
