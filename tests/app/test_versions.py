"""Several versions of a model served at once, against a real server (`python -m app`): a
reload of a new version keeps the one before it answering at /v2/models/{name}/versions/{v}
(each version with its own graph), up to COUNTER_MAX_MODEL_VERSIONS, until the model is
unloaded."""

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.app.protowire import field as _field
from tests.app.protowire import fields
from tests.app.protowire import varint as _varint
from tests.app.server import free_port, serving

pytestmark = pytest.mark.server
TOKEN = "an-operator-token"
MODEL = "/v2/models/counter-post"


def call(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    sent = urllib.request.Request(base + path, data, headers, method=method)
    try:
        with urllib.request.urlopen(sent, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def proved(base: str, path: str) -> list[bool]:
    """`proved` for 1299 and 99999999999 (counter's certificate covers them, counter-post's
    does not: which graph answered)."""
    body = {
        "inputs": [
            {"name": "number", "shape": [2], "datatype": "BYTES", "data": ["1299", "99999999999"]}
        ],
        "outputs": [{"name": "proved"}, {"name": "output"}],
    }
    status, answer = call(base, "POST", path + "/infer", body)
    assert status == 200, answer
    outputs = {o["name"]: o["data"] for o in answer["outputs"]}
    assert outputs["output"] == ["1300", "100000000000"]
    return list(outputs["proved"])


def grpc_proved(address: str, version: str) -> tuple[str, list[bool]]:
    """gRPC ModelInfer of counter-post at `version` for the same two numbers: the version that
    answered, and `proved`."""
    numbers = [b"1299", b"99999999999"]
    raw = b"".join(len(n).to_bytes(4, "little") + n for n in numbers)
    tensor = _field(1, b"number") + _field(2, b"BYTES") + _field(3, _varint(2))
    request = (
        _field(1, b"counter-post")
        + _field(2, version.encode())
        + _field(5, tensor)
        + _field(6, _field(1, b"proved"))
        + _field(7, raw)
    )
    with grpc.insecure_channel(address) as channel:
        answer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")(
            request, timeout=30
        )
    read = fields(answer)
    return read[2][0].decode(), [bool(b) for b in read[6][0]]


def test_a_reload_keeps_the_version_before_addressable_until_unloaded(
    models_copy: Path, tmp_path: Path
) -> None:
    post_card = models_copy / "counter-post.json"
    post = json.loads(post_card.read_text())
    counter = json.loads((models_copy / "counter.json").read_text())
    grpc_port = free_port()
    settings = {
        "COUNTER_MODEL_CONTROL": "explicit",
        "COUNTER_ADMIN_TOKEN": TOKEN,
        "COUNTER_GRPC_PORT": str(grpc_port),
    }
    address = f"127.0.0.1:{grpc_port}"
    with serving(models_copy, tmp_path, **settings) as (_, base, _):
        assert call(base, "GET", MODEL)[1]["versions"] == ["2.0.0"]
        assert proved(base, MODEL) == [False, False]

        # 3.0.0 of counter-post is another graph: counter's, whose certificate covers these.
        post_card.write_text(json.dumps({**counter, "name": "counter-post", "version": "3.0.0"}))
        assert call(base, "POST", "/v2/repository/models/counter-post/load")[0] == 200
        status, latest = call(base, "GET", MODEL)
        assert status == 200
        assert latest["versions"] == ["3.0.0", "2.0.0"]  # the latest first
        assert latest["parameters"]["reliable_carry_length"] == "unbounded"
        status, before = call(base, "GET", f"{MODEL}/versions/2.0.0")
        assert status == 200
        assert before["parameters"]["reliable_carry_length"] == -1
        assert call(base, "GET", f"{MODEL}/versions/2.0.0/ready")[0] == 200
        # Each version answers with its own graph; a request naming none gets the latest.
        assert proved(base, f"{MODEL}/versions/2.0.0") == [False, False]
        assert proved(base, f"{MODEL}/versions/3.0.0") == [True, True]
        assert proved(base, MODEL) == [True, True]
        assert grpc_proved(address, "2.0.0") == ("2.0.0", [False, False])  # model_version
        assert grpc_proved(address, "3.0.0") == ("3.0.0", [True, True])
        assert grpc_proved(address, "") == ("3.0.0", [True, True])  # none named: the latest
        # At once (so that they share batches): each still answered by its own version.
        paths = [f"{MODEL}/versions/{v}" for v in ("2.0.0", "3.0.0")] * 24
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda path: proved(base, path), paths))
        assert answers == [[path.endswith("3.0.0")] * 2 for path in paths]
        status, refused = call(base, "GET", f"{MODEL}/versions/1.0.0")
        assert status == 404
        assert "has no version '1.0.0'; it serves 3.0.0, 2.0.0" in refused["error"]
        status, index = call(base, "POST", "/v2/repository/index", {})
        assert [(e["version"], e["state"]) for e in index if e["name"] == "counter-post"] == [
            ("3.0.0", "READY"),
            ("2.0.0", "READY"),
        ]

        # A third version: two are served (COUNTER_MAX_MODEL_VERSIONS=2), the oldest goes.
        post_card.write_text(json.dumps({**post, "version": "4.0.0"}))
        assert call(base, "POST", "/v2/repository/models/counter-post/load")[0] == 200
        assert call(base, "GET", MODEL)[1]["versions"] == ["4.0.0", "3.0.0"]
        assert call(base, "GET", f"{MODEL}/versions/2.0.0")[0] == 404
        assert proved(base, f"{MODEL}/versions/3.0.0") == [True, True]
        assert proved(base, MODEL) == [False, False]

        # Unloaded: every version of it.
        assert call(base, "POST", "/v2/repository/models/counter-post/unload")[0] == 200
        for path in (MODEL, f"{MODEL}/versions/3.0.0", f"{MODEL}/versions/4.0.0"):
            assert call(base, "GET", path)[0] == 404
