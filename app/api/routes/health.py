"""What an orchestrator polls: /healthz (alive), /readyz (models loaded and warm), /metrics."""

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from app import workers
from app.api.schemas import Health
from app.http.lean import LeanRoute
from app.metrics import exposition

router = APIRouter(tags=["health"], route_class=LeanRoute)

_OK = orjson.dumps({"status": "ok"})


@router.get(
    "/healthz",
    response_model=Health,
    responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}},
)
async def healthz(_: Request) -> Response:
    """Alive: the process answers HTTP (models may still be loading)."""
    return Response(_OK, media_type="application/json")


@router.get(
    "/readyz",
    response_model=Health,
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {"status": "ready", "models": ["counter", "counter-post"]}
                }
            }
        },
        503: {
            "model": Health,
            "description": "not ready",
            "content": {
                "application/json": {
                    "example": {"status": "not ready", "models": [], "reason": "stopping"}
                }
            },
        },
    },
)
async def readyz(request: Request) -> Response:
    """Ready: every model loaded, verified and warmed up, in every worker; 503 before that
    and, from SIGTERM on, while in-flight requests drain."""
    service = request.app.state.service
    if service is None or not service.ready or not workers.siblings_ready():
        reason = "stopping" if service is not None and service.draining else "models are loading"
        body = {"status": "not ready", "models": [], "reason": reason}
        return Response(orjson.dumps(body), status_code=503, media_type="application/json")
    body = {"status": "ready", "models": service.registry.names}
    return Response(orjson.dumps(body), media_type="application/json")


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {
                CONTENT_TYPE_LATEST: {
                    "example": 'counter_errors_total{kind="invalid_number"} 3.0\n'
                }
            }
        }
    },
)
async def metrics(_: Request) -> Response:
    """Prometheus text: request and model-run latency, digits processed, errors by kind."""
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
