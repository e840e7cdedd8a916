"""Fixtures for the service tests: the app on the SHIPPED models, and copies of them to break."""

import json
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from app.main import create_app
from app.settings import DEFAULT_MODELS_DIR, Settings
from core.card import ModelCard

with warnings.catch_warnings():
    # Starlette would rather have httpx2; httpx (a dev dependency) works the same here.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="session")
def shipped() -> Path:
    """The repository's models/ folder, as `make serve` uses it."""
    if not (DEFAULT_MODELS_DIR / "counter.json").exists():
        pytest.fail(f"the shipped models are missing from {DEFAULT_MODELS_DIR}")
    return DEFAULT_MODELS_DIR


@pytest.fixture(scope="session")
def client(shipped: Path) -> Iterator[TestClient]:
    """The service with default settings, started (models loaded) for the whole session."""
    with TestClient(create_app(Settings(models_dir=shipped))) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def post_card(shipped: Path) -> ModelCard:
    return ModelCard.model_validate_json((shipped / "counter-post.json").read_bytes())


@pytest.fixture
def models_copy(shipped: Path, tmp_path: Path) -> Path:
    """A writable copy of the shipped models (cards and .onnx files) to break on purpose."""
    folder = tmp_path / "models"
    folder.mkdir()
    for path in shipped.glob("*"):
        if path.suffix in (".json", ".onnx"):
            shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="session")
def spec(client: TestClient) -> dict[str, Any]:
    """The live OpenAPI document (examples made by the loaded models)."""
    document: dict[str, Any] = client.get("/openapi.json").json()
    return document


def conforms(spec: dict[str, Any], value: Any, schema: str) -> None:
    """Validate a live answer against the schema /docs publishes for it."""
    jsonschema.Draft202012Validator({**spec, "$ref": f"#/components/schemas/{schema}"}).validate(
        value
    )


def started(settings: Settings) -> TestClient:
    """A TestClient for an app with these settings (use as a context manager to start it)."""
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
