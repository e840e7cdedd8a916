"""The model repository (Triton's extension): only an operator changes it, and loading,
reloading and unloading a model under load fails no request to the other models.

The access tests run the app in-process; the load test runs the real server (`python -m app`)
on a copy of the shipped models, with clients posting all along."""

import http.client
import json
import threading
import time
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.errors import ServiceError
from app.grpc.threads import Runs
from app.main import create_app
from app.settings import Settings
from core.codec import add_one
from tests.app.server import serving

TOKEN = "an-operator-token"
LOAD = "/v2/repository/models/counter-post/load"
UNLOAD = "/v2/repository/models/counter-post/unload"


def _client(**settings: Any) -> TestClient:
    return TestClient(create_app(Settings(**settings)))


def test_without_a_token_set_load_and_unload_are_off(shipped: Path) -> None:
    with _client(models_dir=shipped, model_control="explicit") as client:
        for path in (LOAD, UNLOAD):
            reply = client.post(path, headers={"authorization": f"Bearer {TOKEN}"})
            assert reply.status_code == 403
            assert "COUNTER_ADMIN_TOKEN is not set" in reply.json()["error"]
        index = client.post("/v2/repository/index")  # public
        assert index.status_code == 200
        assert {e["name"]: e["state"] for e in index.json()} == {
            "counter": "READY",
            "counter-post": "READY",
        }


@pytest.mark.parametrize(
    "header", [None, f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN]
)
def test_a_wrong_or_missing_token_is_401(shipped: Path, header: str | None) -> None:
    with _client(models_dir=shipped, model_control="explicit", admin_token=TOKEN) as client:
        headers = {} if header is None else {"authorization": header}
        for path in (LOAD, UNLOAD):
            reply = client.post(path, headers=headers)
            assert reply.status_code == 401
            assert reply.headers["www-authenticate"] == "Bearer"
            assert "Authorization: Bearer <COUNTER_ADMIN_TOKEN>" in reply.json()["error"]
        assert client.post("/increment", json={"number": "9", "model": "counter-post"}).is_success


def test_the_token_is_not_enough_unless_model_control_is_explicit(shipped: Path) -> None:
    with _client(models_dir=shipped, admin_token=TOKEN) as client:  # COUNTER_MODEL_CONTROL none
        reply = client.post(UNLOAD, headers={"authorization": f"Bearer {TOKEN}"})
        assert reply.status_code == 403
        assert "COUNTER_MODEL_CONTROL is 'none'" in reply.json()["error"]


class Load:
    """Clients posting /increment to one model until stopped: statuses, and wrong answers."""

    def __init__(self, base: str, model: str, threads: int) -> None:
        self.port = int(base.rsplit(":", 1)[1])
        self.model = model
        self.statuses: Counter[int] = Counter()
        self.wrong = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]
        self._lock = threading.Lock()

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self, seed: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        number = seed * 1000 + 99
        while True:  # at least one request each, however soon it is stopped
            number += 7
            body = json.dumps({"number": str(number), "model": self.model, "detail": "none"})
            try:
                connection.request("POST", "/increment", body, {"content-type": "application/json"})
                reply = connection.getresponse()
                status, answer = reply.status, json.loads(reply.read())
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                status, answer = 0, {}
            with self._lock:
                self.statuses[status] += 1
                if status == 200 and answer["output"] != add_one(str(number)):
                    self.wrong += 1
            if self._stop.is_set():
                connection.close()
                return

    def snapshot(self) -> Counter[int]:
        with self._lock:
            return Counter(self.statuses)


def _call(base: str, method: str, path: str, headers: dict[str, str]) -> tuple[int, Any]:
    """One request on a connection of its own, closed after: status and JSON body."""
    port = int(base.rsplit(":", 1)[1])
    with closing(http.client.HTTPConnection("127.0.0.1", port, timeout=120)) as connection:
        connection.request(method, path, b"", headers)
        reply = connection.getresponse()
        return reply.status, json.loads(reply.read())


def _post(base: str, path: str, token: str = TOKEN) -> tuple[int, Any]:
    return _call(base, "POST", path, {"authorization": f"Bearer {token}"})


def _version(base: str) -> str:
    version: str = _call(base, "GET", "/v2/models/counter-post", {})[1]["versions"][0]
    return version


@pytest.mark.server
def test_load_reload_and_unload_under_load_fail_nothing_on_the_others(
    models_copy: Path, tmp_path: Path
) -> None:
    card = models_copy / "counter-post.json"
    original = json.loads(card.read_text())
    settings = {"COUNTER_MODEL_CONTROL": "explicit", "COUNTER_ADMIN_TOKEN": TOKEN}
    with (
        serving(models_copy, tmp_path, **settings) as (_, base, _),
        Load(base, "counter", threads=3) as other,
    ):
        # Unload: counter-post answers 404 from then on.
        assert _post(base, UNLOAD) == (200, {"name": "counter-post", "state": "UNAVAILABLE"})
        with Load(base, "counter-post", threads=1) as gone:
            pass
        assert set(gone.snapshot()) == {404}
        # Load it back, then a new version of it, with its own clients all along: every one of
        # their requests is answered, by the old version or the new.
        assert _post(base, LOAD) == (200, {"name": "counter-post", "state": "READY"})
        with Load(base, "counter-post", threads=1) as replaced:
            card.write_text(json.dumps({**original, "version": "2.0.1"}))
            assert _post(base, LOAD)[0] == 200
            assert _version(base) == "2.0.1"
            # A version that fails its checks (the sha256 of another graph) is refused with
            # the reason, and 2.0.1 keeps serving.
            card.write_text(json.dumps({**original, "version": "2.0.2", "sha256": "0" * 64}))
            status, refused = _post(base, LOAD)
            assert status == 400
            assert "sha256" in refused["error"]
            assert "still serves" in refused["error"]
            assert _version(base) == "2.0.1"
        assert set(replaced.snapshot()) == {200}
        assert replaced.wrong == 0
    answered = other.snapshot()
    assert set(answered) == {200}, answered  # not one failed request to the other model
    assert other.wrong == 0
    assert answered[200] > 100


def _served_version(base: str) -> str | None:
    status, body = _call(base, "GET", "/v2/models/counter-post", {})
    return body["versions"][0] if status == 200 else None


def _until(condition: Any, within: float = 60) -> bool:
    """Poll a condition until it holds (the service polls its folder on its own clock)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.server
def test_poll_mode_follows_the_models_folder(models_copy: Path, tmp_path: Path) -> None:
    card = models_copy / "counter-post.json"
    original = card.read_text()
    settings = {
        "COUNTER_MODEL_CONTROL": "poll",
        "COUNTER_MODEL_POLL_SECONDS": "0.2",
        "COUNTER_ADMIN_TOKEN": TOKEN,
    }
    with serving(models_copy, tmp_path, **settings) as (_, base, log):
        assert _served_version(base) == "2.0.0"
        card.unlink()
        assert _until(lambda: _served_version(base) is None)  # a removed card: unloaded
        card.write_text(json.dumps({**json.loads(original), "version": "2.0.1"}))
        assert _until(lambda: _served_version(base) == "2.0.1")  # a new card: loaded
        card.write_text(json.dumps({**json.loads(original), "sha256": "0" * 64}))
        assert _until(lambda: "sha256" in log.read_text())  # refused, and logged
        assert _served_version(base) == "2.0.1"  # the version before serves on
        # The operator's calls are not the way in this mode.
        status, refused = _post(base, UNLOAD)
        assert status == 403
        assert "COUNTER_MODEL_CONTROL is 'poll'" in refused["error"]


def test_an_unload_waits_for_the_models_calls_on_grpcs_handler_threads(shipped: Path) -> None:
    """A call in progress on a handler thread (app.grpc.threads.Runs.call) holds the unload
    until it ends; the model is gone for new requests at once."""
    with _client(models_dir=shipped, model_control="explicit", admin_token=TOKEN) as client:
        service = client.app.state.service  # type: ignore[attr-defined]
        runs = Runs(service, 0.0)
        service.thread_calls = runs.busy
        held, entered = threading.Event(), threading.Event()

        def grpc_call() -> None:
            with runs.call(lambda: service.model("counter-post")):
                entered.set()
                held.wait(60)

        caller = threading.Thread(target=grpc_call)
        caller.start()
        assert entered.wait(60)
        replies: list[int] = []
        unloading = threading.Thread(
            target=lambda: replies.append(
                client.post(UNLOAD, headers={"authorization": f"Bearer {TOKEN}"}).status_code
            )
        )
        unloading.start()
        assert _until(
            lambda: (
                client.post("/increment", json={"number": "9", "model": "counter-post"}).status_code
                == 404
            )
        )
        unloading.join(0.5)
        assert unloading.is_alive()  # removed, and the drain waits for the call
        held.set()
        unloading.join(60)
        caller.join(60)
        assert replies == [200]
        # a call that finds the model gone is refused and never counted
        with pytest.raises(ServiceError), runs.call(lambda: service.model("counter-post")):
            pass
        assert not runs.busy([m for m in service.registry.models.values()])
