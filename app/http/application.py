"""CounterApp: the FastAPI application with the edge (app.http.edge) in front of its own stack,
and every refusal the framework itself makes (no such path, wrong method, a bad path value, an
unexpected exception) answered in the service's error shape."""

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp

from app.errors import Kind, ServiceError
from app.http import docs_pages
from app.http.edge import Edge, error_body
from app.http.headers import STATE, RequestState
from app.http.lean import LeanTable
from app.metrics import ERRORS
from app.runtime.traffic import Traffic
from app.settings import Settings

_KIND_BY_STATUS = {404: Kind.NOT_FOUND, 405: Kind.METHOD_NOT_ALLOWED}


class CounterApp(FastAPI):
    """FastAPI whose middleware stack has the edge in front, whose OpenAPI document is made by
    `document` (app.api.openapi), and whose /docs and /redoc are served offline."""

    def __init__(
        self,
        settings: Settings,
        lean: LeanTable,
        document: Callable[[FastAPI], dict[str, Any]],
        **kwargs: Any,
    ) -> None:
        super().__init__(docs_url=None, redoc_url=None, **kwargs)
        docs_pages.add(self)
        self.settings = settings
        self.lean = lean
        self.traffic = Traffic()  # the server counts it and drains it; the runtime reads it
        self._document = document
        self.add_exception_handler(HTTPException, _http_error)
        self.add_exception_handler(RequestValidationError, _validation_error)
        self.add_exception_handler(ServiceError, _service_error)
        self.add_exception_handler(Exception, _internal)

    def build_middleware_stack(self) -> ASGIApp:
        # The Edge goes in front of FastAPI's own middlewares (body limit, errors, telemetry;
        # each a few microseconds a request), not inside them as add_middleware would put it:
        # a lean route is answered from the Edge without passing them.
        return Edge(
            super().build_middleware_stack(),
            max_body_bytes=self.settings.max_body_bytes,
            access_log=self.settings.access_log,
            traffic=self.traffic,
            lean=self.lean,
            allowed_hosts=self.settings.allowed_hosts,
        )

    def openapi(self) -> dict[str, Any]:
        return self._document(self)


def _shape(request: Request, error: ServiceError) -> Response:
    """A refusal raised by the framework itself (no such path, wrong method, bad path value)."""
    ERRORS.labels(error.kind.label).inc()
    state: RequestState | None = request.scope.get(STATE)
    request_id = state.request_id if state is not None else ""
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
