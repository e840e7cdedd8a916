"""Conformance with the Open Inference Protocol's own REST document (KServe's
rest_predict_v2.yaml): every path it defines answers, and every answer fits its schema."""

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from fastapi.testclient import TestClient

from tests.app.client import post

DOCUMENT = Path(__file__).resolve().parents[1] / "reference" / "kserve" / "rest_predict_v2.yaml"
SPEC: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text())
REQUEST = {
    "id": "42",
    "inputs": [{"name": "number", "shape": [2], "datatype": "BYTES", "data": ["1299", "41"]}],
}


def _validate(value: Any, schema: dict[str, Any]) -> None:
    """Validate against a schema of the document, its $refs resolved within it."""
    jsonschema.Draft7Validator({**schema, "components": SPEC["components"]}).validate(value)


def _path(template: str, version: str) -> str:
    return template.replace("${MODEL_NAME}", "counter").replace("${MODEL_VERSION}", version)


@pytest.mark.parametrize(
    ("template", "method"),
    [
        (path, method)
        for path, item in SPEC["paths"].items()
        for method in item
        if method != "parameters"
    ],
)
def test_every_path_of_the_protocol_answers_as_its_schema_says(
    client: TestClient, template: str, method: str
) -> None:
    version = client.get("/models/counter").json()["version"]
    path = _path(template, version)
    operation = SPEC["paths"][template][method]
    if method == "post":
        _validate(REQUEST, operation["requestBody"]["content"]["application/json"]["schema"])
        response = post(client, path, REQUEST)
    else:
        response = client.get(path)
    assert response.status_code == 200, (path, response.text)
    content = operation["responses"]["200"].get("content", {}).get("application/json")
    if content:
        _validate(response.json(), content["schema"])


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v2/models/nope/versions/1.0.0", None),
        ("/v2/models/counter/versions/9.9/infer", REQUEST),
        ("/v2/models/counter/infer", {"inputs": [{"name": "number"}]}),
        (
            "/v2/models/counter/infer",
            {"inputs": [{"name": "digits", "shape": [1, 2], "datatype": "INT64", "data": [1]}]},
        ),
        ("/v2/models/counter/infer", b"{"),
    ],
)
def test_errors_are_the_protocols_error_object(client: TestClient, path: str, body: Any) -> None:
    response = client.get(path) if body is None else post(client, path, body)
    assert 400 <= response.status_code < 500
    error_schema = SPEC["components"]["schemas"]["inference_error_response"]
    _validate(response.json(), error_schema)
    assert set(response.json()) == {"error"}
    assert response.json()["error"]
