"""The FastAPI application: settings, the CounterService built in the lifespan, routes, edge."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp

from app import process, tracing, workers
from app.api import openapi
from app.api.routes import count, health, increment, models, page, repository, v2
from app.errors import Kind, ServiceError
from app.http import docs_pages, server
from app.http.edge import Edge, error_body
from app.http.lean import LeanRoute
from app.metrics import ERRORS
from app.runtime.models import Registry
from app.runtime.registry import load_registry
from app.runtime.repository import Repository
from app.runtime.service import CounterService
from app.settings import Settings

_KIND_BY_STATUS = {404: Kind.NOT_FOUND, 405: Kind.METHOD_NOT_ALLOWED}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Build the service (loading the models unless given a registry), ready until stopping."""
    settings: Settings = app.state.settings
    registry: Registry | None = app.state.registry
    if registry is None:
        registry = load_registry(
            settings.models_dir, settings.default_model, settings.max_model_bytes
        )
    service = CounterService(registry, settings, server.requests_in_progress)
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


def _shape(request: Request, error: ServiceError) -> Response:
    """A refusal raised by the framework itself (no such path, wrong method, bad path value)."""
    ERRORS.labels(error.kind.label).inc()
    request_id = request.scope.get("state", {}).get("request_id", "")
    v2 = request.url.path.startswith("/v2")
    body = error_body(error, request_id, v2)
    return Response(body, error.status, media_type="application/json", headers=error.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = _KIND_BY_STATUS.get(exc.status_code, Kind.INVALID_REQUEST)
    message = {
        Kind.NOT_FOUND: f"no such path: {request.url.path[:80]!r}; the API is listed at /docs",
        Kind.METHOD_NOT_ALLOWED: f"{request.method} is not accepted here; see /docs",
    }.get(kind, str(exc.detail))
    allow = {k.lower(): v for k, v in (exc.headers or {}).items()}.get("allow")
    headers = {"allow": allow} if allow else None
    return _shape(request, ServiceError(kind, message, headers))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first: dict[str, Any] = next(iter(exc.errors()), {})
    where = ".".join(str(p) for p in first.get("loc", ()))
    message = f"{where}: {first.get('msg', 'invalid request')}"
    return _shape(request, ServiceError(Kind.INVALID_REQUEST, message))


async def _service_error(request: Request, exc: Exception) -> Response:
    """A refusal raised by a FastAPI route (the lean ones are answered by the Edge itself)."""
    assert isinstance(exc, ServiceError)
    return _shape(request, exc)


async def _internal(request: Request, exc: Exception) -> Response:
    """An unexpected exception in a FastAPI route: logged by the framework, answered in our
    shape (Starlette's default is a plain-text 500)."""
    return _shape(
        request, ServiceError(Kind.INTERNAL, "the service failed on this request; it is logged")
    )


def create_app(settings: Settings | None = None, registry: Registry | None = None) -> FastAPI:
    """The service; a preloaded registry (from `python -m app`) skips loading in the lifespan."""
    settings = settings or Settings()
    # /docs (Swagger UI) and /redoc load their JS and CSS from this service, not from a CDN,
    # so they work on machines without internet.
    app = FastAPIOffline(
        title="RNN Counter",
        version="2.0.0",
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
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    routers = (
        increment.router,
        v2.router,
        health.router,
        count.router,
        models.router,
        repository.router,
    )
    for router in routers:
        app.include_router(router)
    app.include_router(page.router)  # the explorer page at /, its files and the plots
    docs_pages.guard(app.routes)  # /docs and /redoc: a content policy, no framing

    def draining() -> bool:
        service: CounterService | None = app.state.service
        return service is not None and service.draining

    def lean() -> list[LeanRoute]:
        # Hot paths first: an exact path is one lookup, patterns are tried in this order.
        return [r for router in routers for r in router.routes if isinstance(r, LeanRoute)]

    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(Exception, _internal)
    build = app.build_middleware_stack

    def fronted() -> ASGIApp:
        # The Edge goes in front of FastAPI's own middlewares (body limit, errors, telemetry;
        # each a few microseconds a request), not inside them as add_middleware would put it:
        # a lean route is answered from the Edge without passing them.
        return Edge(
            build(),
            max_body_bytes=settings.max_body_bytes,
            access_log=settings.access_log,
            draining=draining,
            lean=lean,
            in_progress=server.requests_in_progress,
            allowed_hosts=settings.allowed_hosts,
        )

    app.build_middleware_stack = fronted  # type: ignore[method-assign]
    app.openapi = partial(openapi.openapi, app)  # type: ignore[method-assign]
    return app
