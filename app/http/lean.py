"""LeanRoute: for endpoints that parse their own request and write their own response bytes,
and LeanTable: the edge's dispatch table of them.

FastAPI's per-request parameter solving and response validation are skipped (the endpoint
takes the Request and returns a Response); /docs still shows the body and responses the
route declares. Used by the hot and the polled endpoints: increment, count, V2 and health.

The edge (app.http.edge) calls a lean route's endpoint directly, found in a LeanTable by exact
path or by its path pattern, instead of through FastAPI's nested routers and its two inner
middlewares: that walk cost every request more than the model run does. Every other path goes
through FastAPI as usual.
"""

from collections.abc import Callable, Coroutine, Iterable
from re import Pattern
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import Scope


class LeanRoute(APIRoute):
    """An APIRoute whose endpoint is `async def f(request: Request) -> Response`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler: Callable[[Request], Coroutine[Any, Any, Response]] = self.endpoint
        return handler


class LeanTable:
    """The lean routes by (method, path), and those with path parameters in the order given
    (hot paths first: an exact path is one lookup, patterns are tried in order)."""

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self.exact: dict[tuple[str, str], LeanRoute] = {}
        # (methods, path regex, route): a cheap filter before the route's own matching
        self.patterns: list[tuple[set[str], Pattern[str], LeanRoute]] = []
        for route in routes:
            if not isinstance(route, LeanRoute):
                raise TypeError(f"{route!r} is not a LeanRoute: the edge cannot call it directly")
            if route.param_convertors:
                self.patterns.append((route.methods or set(), route.path_regex, route))
            else:
                for method in route.methods or ():
                    self.exact[(method, route.path)] = route

    def match(self, scope: Scope) -> LeanRoute | None:
        """The route with path parameters that takes this request (its parameters put in the
        scope), or None: FastAPI's router answers it."""
        method, path = scope["method"], scope["path"]
        for methods, regex, route in self.patterns:
            if method not in methods or regex.match(path) is None:
                continue  # one regex instead of the route's whole matching
            match, child = route.matches(scope)
            if match is Match.FULL:
                scope.update(child)
                return route
        return None
