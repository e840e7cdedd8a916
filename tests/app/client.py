"""The service in this process, through Starlette's TestClient: an app started with given
settings, JSON posts, a schema check against the live /docs, and a metric read from /metrics."""

import json
from typing import Any

import jsonschema
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings

JSON = {"content-type": "application/json"}


def conforms(spec: dict[str, Any], value: Any, schema: str) -> None:
    """Validate a live answer against the schema /docs publishes for it."""
    jsonschema.Draft202012Validator({**spec, "$ref": f"#/components/schemas/{schema}"}).validate(
        value
    )


def started(settings: Settings) -> TestClient:
    """A TestClient for an app with these settings (use as a context manager to start it).

    A walked certificate is skipped (COUNTER_WALKED_CERTIFICATES=skip: seconds of CPU a start)
    unless the settings ask for walked_certificates themselves."""
    if "walked_certificates" not in settings.model_fields_set:
        settings = settings.model_copy(update={"walked_certificates": "skip"})
    return TestClient(create_app(settings))


def post(client: TestClient, path: str, body: Any, **headers: str) -> Any:
    """POST raw bytes (or JSON-encode anything else) with a JSON content type by default."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, content=content, headers={**JSON, **headers})


def metric(client: TestClient, series: str) -> float:
    """One series' value from GET /metrics, 0 when it is not there yet.

    The metrics registry is process-wide, so tests compare a value before and after a request.
    """
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0
