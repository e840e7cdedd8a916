"""The FastAPI application: wiring of settings, registry, routes, error shape and middleware."""

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from app.batcher import Batcher
from app.docs import openapi_with_cards
from app.engine import EngineOptions
from app.errors import install_error_handlers
from app.limits import BodyLimitMiddleware
from app.metrics import MetricsMiddleware
from app.registry import Registry, load_registry
from app.routes import health, increment, models
from app.settings import Settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load, verify and warm every model (unless given one), then report ready until stopping."""
    settings: Settings = app.state.settings
    if app.state.registry is None:
        app.state.registry = load_registry(settings.models_dir, settings.default_model)
    registry: Registry = app.state.registry
    options: EngineOptions = app.state.engine_options
    app.state.batchers = {name: Batcher(m, options) for name, m in registry.models.items()}
    app.state.long_runs = anyio.CapacityLimiter(increment.LONG_RUNS)
    # Everything alive now (framework, models) lives as long as the process: keep it out of
    # the garbage collector's full passes, which otherwise stall requests for milliseconds.
    gc.freeze()
    app.state.ready = True
    yield
    app.state.ready = False


def create_app(settings: Settings | None = None, registry: Registry | None = None) -> FastAPI:
    """The service; a preloaded registry (from `python -m app`) skips loading in the lifespan."""
    settings = settings or Settings()
    # /docs (Swagger UI) and /redoc load their JS and CSS from this service, not from a CDN,
    # so they work on machines without internet.
    app = FastAPIOffline(
        title="RNN Counter",
        version="1.0.0",
        summary="A recurrent network adds one to a number digit by digit, and shows its work.",
        lifespan=lifespan,
        # /metrics is Prometheus; FastAPI's own OpenTelemetry hooks would cost every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.ready = False
    app.state.batchers = {}
    app.state.engine_options = EngineOptions(settings.low_confidence, settings.summary_steps)
    install_error_handlers(app)
    app.include_router(increment.router)
    app.include_router(models.router)
    app.include_router(health.router)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware)  # outermost: times refusals too
    app.openapi = partial(openapi_with_cards, app)  # type: ignore[method-assign]
    return app
