"""The routes, by router. The edge calls the lean routers' routes directly (app.http.lean), in
the order listed here: hot paths first. The others go through FastAPI's router."""

from starlette.routing import BaseRoute

from app.api.routes import count, health, increment, models, repository, v2

LEAN = (increment.router, v2.router, health.router, count.router)
ROUTERS = (*LEAN, models.router, repository.router)  # and the explorer page (app.api.routes.page)


def lean() -> list[BaseRoute]:
    """The lean routes, in the order the edge tries them."""
    return [route for router in LEAN for route in router.routes]
