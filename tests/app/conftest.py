"""Fixtures for the service tests: the app on the SHIPPED models, and copies of them to break.
The helpers the tests import (post, started, conforms, metric) are in tests/app/client.py."""

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.settings import DEFAULT_MODELS_DIR, Settings
from core.card import ModelCard
from tests.app.client import started


@pytest.fixture(scope="session")
def shipped() -> Path:
    """The repository's models/ folder, as `make serve` uses it."""
    if not (DEFAULT_MODELS_DIR / "counter.json").exists():
        pytest.fail(f"the shipped models are missing from {DEFAULT_MODELS_DIR}")
    return DEFAULT_MODELS_DIR


@pytest.fixture(scope="session")
def client(shipped: Path) -> Iterator[TestClient]:
    """The service with default settings, started (models loaded) for the whole session."""
    with started(Settings(models_dir=shipped)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def post_card(shipped: Path) -> ModelCard:
    return ModelCard.model_validate_json((shipped / "counter-post.json").read_bytes())


@pytest.fixture
def models_copy(shipped: Path, tmp_path: Path) -> Path:
    """A writable copy of the shipped models (cards, .onnx files, certificates) to break on
    purpose."""
    folder = tmp_path / "models"
    folder.mkdir()
    for path in shipped.glob("*"):
        if path.suffix in (".json", ".onnx", ".npz"):
            shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="session")
def spec(client: TestClient) -> dict[str, Any]:
    """The live OpenAPI document (examples made by the loaded models)."""
    document: dict[str, Any] = client.get("/openapi.json").json()
    return document
