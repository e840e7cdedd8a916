"""The service, wired: settings, the routes, the CounterService built in the lifespan."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app import __version__, process, tracing, workers
from app.api import openapi, routes
from app.api.routes import page
from app.http.application import CounterApp
from app.http.lean import LeanTable
from app.runtime.models import Registry
from app.runtime.registry import load_registry
from app.runtime.repository import Repository
from app.runtime.service import CounterService
from app.settings import Settings


@asynccontextmanager
async def lifespan(app: CounterApp) -> AsyncIterator[None]:
    """Build the service (loading the models unless given a registry), ready until stopping."""
    settings: Settings = app.state.settings
    registry: Registry | None = app.state.registry
    if registry is None:
        registry = load_registry(
            settings.models_dir,
            settings.default_model,
            settings.max_model_bytes,
            settings.walked_certificates,
        )
    service = CounterService(registry, settings, app.traffic)
    app.state.service = service
    app.state.repository = Repository(service)
    app.state.repository.start_polling()  # COUNTER_MODEL_CONTROL=poll only
    grpc_server = None
    if settings.grpc_port is not None:  # imported only when on: grpc costs memory and start time
        from app.grpc import server as grpc_v2

        grpc_server = await grpc_v2.start(service, app.state.repository, settings, app.version)
    process.settle()  # start-up's garbage collected, the rest frozen, memory handed back
    service.ready = service.serving = True
    workers.mark_ready(True)  # for /readyz in the sibling workers, if any
    try:
        yield
    finally:
        workers.mark_ready(False)
        service.ready = service.serving = False
        app.state.repository.stop_polling()
        if grpc_server is not None:
            await grpc_server.stop()
        service.close()
        tracing.shutdown()  # the spans still held go out


def create_app(settings: Settings | None = None, registry: Registry | None = None) -> CounterApp:
    """The service; a preloaded registry (from `python -m app`) skips loading in the lifespan."""
    settings = settings or Settings()
    app = CounterApp(
        settings,
        LeanTable(routes.lean()),
        openapi.openapi,
        title="RNN Counter",
        version=__version__,
        summary="A recurrent network adds one to a number digit by digit, shows its work, "
        "and says when a proof covers the answer.",
        lifespan=lifespan,
        # /metrics is Prometheus; FastAPI's own OpenTelemetry hooks would cost every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        redirect_slashes=False,  # a redirect would be built from the Host header
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.service = None
    for router in routes.ROUTERS:
        app.include_router(router)
    app.include_router(page.router)  # the explorer page at /, its files and the plots
    return app
