"""Health, readiness, model cards, metrics and docs: what operators and API users look at."""

from typing import Any

import onnxruntime as ort
import orjson
import pytest
from fastapi.testclient import TestClient

from app.api.schemas import ModelList
from app.main import create_app
from app.settings import Settings
from core.codec import add_one
from tests.app.client import conforms, metric, post, started


def test_healthz_is_alive(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_docs_show_the_live_answer(client: TestClient, path: str) -> None:
    spec = client.get("/openapi.json").json()
    documented = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
    assert documented["example"] == client.get(path).json()


def test_readyz_is_503_until_models_are_loaded_then_200(shipped: object) -> None:
    app = create_app(Settings(walked_certificates="skip"))
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
    assert card["metrics"]["certificate"]["certified"] is False
    missing = client.get("/models/nope")
    assert missing.status_code == 404
    assert "available: counter, counter-post" in missing.json()["message"]


def test_each_model_shows_what_the_service_checked_itself(client: TestClient) -> None:
    for name in ("counter", "counter-post"):
        served = client.get(f"/models/{name}").json()
        serving = served["serving"]
        assert serving["onnxruntime"] == ort.__version__
        claimed = served["metrics"]["reliable_carry_length"]
        measured = serving["activation_error_measured"]
        if claimed == -1:
            assert measured is None  # no proof claimed: nothing relies on it
        else:
            assert 0 < measured <= served["metrics"]["certificate"]["tanh_error_bound"]
        if claimed == "unbounded":
            assert serving["proved_carry_length"] == "unbounded"
        else:
            assert serving["proved_carry_length"] in ("unbounded", *range(claimed, 10**6))
        assert serving["warm_up_answers"] > 10_000


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
                # V2 infer takes any Content-Type (tritonclient sends none): no 415 there.
                statuses = ("400", "404", "413", "422")
                for status in statuses if path.startswith("/v2") else (*statuses, "415"):
                    assert status in operation["responses"], f"{where}: {status} undocumented"
            ok = operation["responses"]["200"]["content"]
            assert any("example" in c or "examples" in c for c in ok.values()), where


def _without_id(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key != "request_id"}


def test_unknown_model_and_too_large_examples_are_the_live_refusals(shipped: object) -> None:
    with started(Settings(max_body_bytes=5000)) as client:
        spec = client.get("/openapi.json").json()
        live = {
            "404": post(client, "/increment", {"number": "1", "model": "countr"}).json(),
            "413": post(client, "/increment", {"number": "1" * 6000}).json(),
        }
    assert "5000 bytes" in live["413"]["message"]
    for path in ("/increment", "/increment/batch", "/count"):
        responses = spec["paths"][path]["post"]["responses"]
        for status, refusal in live.items():
            examples = responses[status]["content"]["application/json"]["examples"]
            documented = [_without_id(e["value"]) for e in examples.values()]
            assert documented == [_without_id(refusal)], (path, status)


def _approx(value: Any) -> Any:
    """The value with every float compared approximately (onnxruntime kernels differ by CPU)."""
    if isinstance(value, dict):
        return {key: _approx(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_approx(item) for item in value]
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-5, abs=1e-6)
    return value


def test_response_examples_are_real_shapes_and_real_answers(
    client: TestClient, spec: dict[str, Any]
) -> None:
    """Every answer example in /docs fits its schema and is what the service says when asked."""
    examples = 0
    for path, shape in (("/increment", "Answer"), ("/increment/batch", "BatchAnswer")):
        operation = spec["paths"][path]["post"]
        content = operation["responses"]["200"]["content"]["application/json"]
        asked = operation["requestBody"]["content"]["application/json"]["examples"]
        for example in content["examples"].values():
            value = example["value"]
            conforms(spec, value, shape)
            first = value["results"][0] if shape == "BatchAnswer" else value
            assert (first["check"]["expected"] or first["output"]) == add_one(
                first["input"]
            ) or not first["check"]["correct"]
            body: dict[str, Any]
            if shape == "BatchAnswer":
                body = {"numbers": [r["input"] for r in value["results"]], "detail": "none"}
            else:
                body = {"number": value["input"], "model": value["model"]["name"]}
                body["detail"] = value["detail"]
            assert post(client, path, body).json() == _approx(value), body
            examples += 1
        assert asked
    assert examples >= 3


def test_the_count_example_is_what_the_service_streams(
    client: TestClient, spec: dict[str, Any]
) -> None:
    content = spec["paths"]["/count"]["post"]["responses"]["200"]["content"]
    example = content["application/x-ndjson"]["example"]
    documented = [orjson.loads(line) for line in example.splitlines()]
    start, count = documented[0]["input"], len(documented) - 1
    live = post(client, "/count", {"start": start, "count": count, "model": "counter-post"})
    assert [orjson.loads(line) for line in live.text.splitlines()] == documented


def test_a_failing_model_run_is_a_logged_json_500_and_nobody_hangs(
    shipped: object, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("onnxruntime fell over")

    monkeypatch.setattr("app.runtime.batcher.answer_with_probabilities", broken)
    with TestClient(
        create_app(Settings(walked_certificates="skip")), raise_server_exceptions=False
    ) as client:
        response = post(client, "/increment", {"number": "12"})
        assert client.get("/healthz").status_code == 200  # the service goes on
    assert response.status_code == 500
    assert _without_id(response.json()) == {
        "error": "internal",
        "message": "the service failed on this request; it is logged",
    }
    assert response.json()["request_id"] == response.headers["x-request-id"]
    assert "onnxruntime fell over" in caplog.text


def test_a_failing_framework_route_is_a_json_500_too(
    shipped: object, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """GET /models is a FastAPI route (not a lean one the Edge answers itself): its failures
    and refusals have the same shape."""

    def broken(*_: object) -> None:
        raise RuntimeError("the card would not serialise")

    monkeypatch.setattr("app.api.routes.models.model_list", broken)
    with TestClient(
        create_app(Settings(walked_certificates="skip")), raise_server_exceptions=False
    ) as client:
        response = client.get("/models")
        missing = client.get("/models/nope")
    assert response.status_code == 500
    assert _without_id(response.json()) == {
        "error": "internal",
        "message": "the service failed on this request; it is logged",
    }
    assert response.json()["request_id"] == response.headers["x-request-id"]
    assert "the card would not serialise" in caplog.text
    assert missing.status_code == 404
    assert missing.json()["error"] == "unknown_model"
    assert missing.json()["request_id"] == missing.headers["x-request-id"]


def test_a_failing_request_is_timed_as_a_500(
    shipped: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("onnxruntime fell over")

    monkeypatch.setattr("app.runtime.batcher.answer_with_probabilities", broken)
    with TestClient(
        create_app(Settings(walked_certificates="skip")), raise_server_exceptions=False
    ) as client:
        before = metric(client, _timed(500))
        assert post(client, "/increment", {"number": "12"}).status_code == 500
        after = metric(client, _timed(500))
    assert after == before + 1
