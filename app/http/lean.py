"""LeanRoute: for endpoints that parse their own request and write their own response bytes.

FastAPI's per-request parameter solving and response validation are skipped (the endpoint
takes the Request and returns a Response); /docs still shows the body and responses the
route declares. Used by the hot and the polled endpoints: increment and health.
"""

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response


class LeanRoute(APIRoute):
    """An APIRoute whose endpoint is `async def f(request: Request) -> Response`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler: Callable[[Request], Coroutine[Any, Any, Response]] = self.endpoint
        return handler
