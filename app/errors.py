"""The one error shape of the API: {"error": <kind>, "message": <what was wrong, what is accepted>}.

Every refusal (bad input, unknown model, body too large, unknown path) leaves the service in
this shape, with a 4xx status, and is counted by kind in /metrics.
"""

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from app.metrics import ERRORS

log = logging.getLogger(__name__)


class InputError(Exception):
    """A request the service refuses: status code, a short kind for metrics, and plain words."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


def error_response(
    status: int, kind: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    """The JSON body every error has; counts it by kind."""
    ERRORS.labels(kind).inc()
    body = orjson.dumps({"error": kind, "message": message})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def unknown_model(name: str | None, available: list[str]) -> InputError:
    """404 for a model name that is not served, listing those that are."""
    return InputError(
        404, "unknown_model", f"no model named {name!r}; available: {', '.join(available)}"
    )


_KIND_BY_STATUS = {404: "not_found", 405: "method_not_allowed"}


async def _input_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, InputError)
    return error_response(exc.status, exc.kind, exc.message)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = _KIND_BY_STATUS.get(exc.status_code, "http_error")
    headers: dict[str, str] | None = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, kind, str(exc.detail), headers)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors: list[Any] = list(exc.errors())
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return error_response(422, "invalid_request", f"{where}: {first.get('msg', 'invalid request')}")


async def _client_gone(_: Request, exc: Exception) -> Response:
    # Nobody reads this answer; it exists so the request is counted, not logged as a failure.
    return error_response(400, "client_disconnected", "the client left before sending the body")


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", "the service failed on this request; it is logged")


def install_error_handlers(app: FastAPI) -> None:
    """Map every refusal to the one error shape (and a bug, should one slip, to a logged 500)."""
    app.add_exception_handler(Exception, _internal_error)
    app.add_exception_handler(InputError, _input_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
