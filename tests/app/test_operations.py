"""Health, readiness, model cards, metrics and docs: what operators and API users look at."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.docs import BATCH_EXAMPLE, FLAGGED_EXAMPLE, INCREMENT_EXAMPLE
from app.main import create_app
from app.schemas import BatchResponse, IncrementResponse, ModelList
from app.settings import Settings
from core.codec import add_one
from tests.app.conftest import metric, post, started


def test_healthz_is_alive(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_docs_show_the_live_answer(client: TestClient, path: str) -> None:
    spec = client.get("/openapi.json").json()
    documented = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
    assert documented["example"] == client.get(path).json()


def test_readyz_is_503_until_models_are_loaded_then_200(shipped: object) -> None:
    app = create_app(Settings())
    not_started = TestClient(app)  # no `with`: the lifespan (loading) has not run
    response = not_started.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "not ready"
    assert post(not_started, "/increment", {"number": "1"}).status_code == 503
    assert not_started.get("/healthz").status_code == 200
    with TestClient(app) as running:
        ready = running.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "models": ["counter", "counter-post"]}
    assert not_started.get("/readyz").status_code == 503  # stopped: not ready again


def test_model_docs_show_the_real_cards(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path, live in (("/models/{name}", "/models/counter"), ("/models", "/models")):
        ok = spec["paths"][path]["get"]["responses"]["200"]["content"]
        assert ok["application/json"]["example"] == client.get(live).json()


def test_models_lists_every_card_and_the_default(client: TestClient) -> None:
    listing = ModelList.model_validate(client.get("/models").json())
    assert listing.default == "counter"
    assert [card.name for card in listing.models] == ["counter", "counter-post"]
    assert listing.skipped == []
    card = client.get("/models/counter-post").json()
    assert card["name"] == "counter-post"
    assert card["metrics"]["carry_certified"] is False
    missing = client.get("/models/nope")
    assert missing.status_code == 404
    assert "available: counter, counter-post" in missing.json()["message"]


def _timed(status: int) -> str:
    return (
        f'counter_http_request_seconds_count{{method="POST",route="/increment",status="{status}"}}'
    )


def test_metrics_count_requests_model_runs_digits_and_errors(shipped: object) -> None:
    series = {
        "answered": _timed(200),
        "refused": _timed(422),
        "model runs": 'counter_model_run_seconds_count{model="counter"}',
        "digits": 'counter_digits_processed_total{model="counter"}',
        "refusals": 'counter_errors_total{kind="invalid_number"}',
    }
    with started(Settings()) as client:
        before = {name: metric(client, line) for name, line in series.items()}
        post(client, "/increment", {"number": "12345"})
        post(client, "/increment", {"number": "x"})
        after = {name: metric(client, line) for name, line in series.items()}
        loaded = metric(client, "counter_models_loaded")
    added = {name: after[name] - before[name] for name in series}
    assert added == {"answered": 1, "refused": 1, "model runs": 1, "digits": 5, "refusals": 1}
    assert loaded == 2


def test_docs_have_request_and_response_examples_for_every_endpoint(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec: dict[str, Any] = client.get("/openapi.json").json()
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            where = f"{method.upper()} {path}"
            assert operation.get("description") or operation.get("summary"), where
            if method == "post":
                body = operation["requestBody"]["content"]["application/json"]
                assert body.get("examples"), f"{where}: no request example"
                for status in ("400", "404", "413", "415", "422"):
                    assert status in operation["responses"], f"{where}: {status} undocumented"
            ok = operation["responses"]["200"]["content"]
            assert any("example" in c or "examples" in c for c in ok.values()), where


def test_unknown_model_and_too_large_examples_are_the_live_refusals(shipped: object) -> None:
    with started(Settings(max_body_bytes=5000)) as client:
        spec = client.get("/openapi.json").json()
        live = {
            "404": post(client, "/increment", {"number": "1", "model": "countr"}).json(),
            "413": post(client, "/increment", {"number": "1" * 6000}).json(),
        }
    assert "5000 bytes" in live["413"]["message"]
    for path in ("/increment", "/increment/batch"):
        responses = spec["paths"][path]["post"]["responses"]
        for status, refusal in live.items():
            examples = responses[status]["content"]["application/json"]["examples"]
            assert [e["value"] for e in examples.values()] == [refusal], (path, status)


def _approx(value: Any) -> Any:
    """The value with every float compared approximately (onnxruntime kernels differ by CPU)."""
    if isinstance(value, dict):
        return {key: _approx(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_approx(item) for item in value]
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-5, abs=1e-6)
    return value


def test_response_examples_are_real_shapes_and_real_answers(client: TestClient) -> None:
    for example in (INCREMENT_EXAMPLE, FLAGGED_EXAMPLE):
        IncrementResponse.model_validate(example)
        assert example["check"]["expected"] == add_one(example["input"])
    BatchResponse.model_validate(BATCH_EXAMPLE)
    asked = [
        ("/increment", {"number": INCREMENT_EXAMPLE["input"]}, INCREMENT_EXAMPLE),
        (
            "/increment",
            {"number": FLAGGED_EXAMPLE["input"], "model": "counter-post", "detail": "none"},
            FLAGGED_EXAMPLE,
        ),
        (
            "/increment/batch",
            {"numbers": [r["input"] for r in BATCH_EXAMPLE["results"]], "detail": "none"},
            BATCH_EXAMPLE,
        ),
    ]
    for path, body, example in asked:
        live = post(client, path, body).json()
        assert live == _approx(example), body


def test_a_failing_model_run_is_a_logged_json_500_and_nobody_hangs(
    shipped: object, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("onnxruntime fell over")

    monkeypatch.setattr("app.batcher.answer_each", broken)
    with TestClient(create_app(Settings()), raise_server_exceptions=False) as client:
        response = post(client, "/increment", {"number": "12"})
        assert client.get("/healthz").status_code == 200  # the service goes on
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal",
        "message": "the service failed on this request; it is logged",
    }
    assert "onnxruntime fell over" in caplog.text


def test_a_failing_request_is_timed_as_a_500(
    shipped: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("onnxruntime fell over")

    monkeypatch.setattr("app.batcher.answer_each", broken)
    with TestClient(create_app(Settings()), raise_server_exceptions=False) as client:
        before = metric(client, _timed(500))
        assert post(client, "/increment", {"number": "12"}).status_code == 500
        after = metric(client, _timed(500))
    assert after == before + 1
