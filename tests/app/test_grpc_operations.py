"""The gRPC port's operations, each against a server of its own: calls past
COUNTER_GRPC_MAX_CALLS are refused naming it, SIGTERM lets a running call finish, and
tritonclient loads and unloads models with the operator's token only."""

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from tests.app.grpc_clients import run_client
from tests.app.grpc_messages import SERVICE, number_request
from tests.app.server import free_port, start_server, stop_server

pytestmark = pytest.mark.server
LONG = "1" + "9" * 999_999  # a second or so of work: calls that overlap


def test_calls_past_the_cap_are_refused_and_sigterm_lets_calls_finish(
    shipped: Path, tmp_path: Path
) -> None:
    port = free_port()
    server, _ = start_server(
        shipped,
        tmp_path / "server.log",
        COUNTER_GRPC_PORT=str(port),
        COUNTER_GRPC_MAX_CALLS="1",
        COUNTER_MAX_LARGE_REQUESTS="8",
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as opened:
            infer = opened.unary_unary(SERVICE + "ModelInfer")

            def one(_: int) -> str:
                try:
                    infer(number_request(LONG), timeout=60)
                    return "OK"
                except grpc.RpcError as error:
                    return f"{error.code().name}: {error.details()}"

            with ThreadPoolExecutor(6) as pool:
                codes = list(pool.map(one, range(6)))
            refused = [code for code in codes if code != "OK"]
            assert "OK" in codes
            assert refused
            assert all(
                code.startswith("RESOURCE_EXHAUSTED: ") and "(COUNTER_GRPC_MAX_CALLS)" in code
                for code in refused
            )
            # SIGTERM while a call runs: it is answered whole, then the process exits 0.
            running = infer.future(number_request(LONG), timeout=60)
            time.sleep(0.2)  # the call is on its way (order only: nothing here is timed)
            server.send_signal(signal.SIGTERM)
            reply = running.result()
            assert b"counter" in reply  # a whole ModelInferResponse, from the model named
            assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            stop_server(server)


def test_tritonclient_loads_and_unloads_with_the_operator_token_only(
    models_copy: Path, tmp_path: Path
) -> None:
    port = free_port()
    server, _ = start_server(
        models_copy,
        tmp_path / "server.log",
        COUNTER_GRPC_PORT=str(port),
        COUNTER_MODEL_CONTROL="explicit",
        COUNTER_ADMIN_TOKEN="an-operator-token",
    )
    try:
        job = {
            "model": "counter-post",
            "actions": [
                {"call": "unload"},
                {"call": "unload", "token": "a-guess"},
                {"call": "unload", "token": "an-operator-token"},
                {"call": "load", "token": "a-guess"},
                {"call": "load", "token": "an-operator-token"},
            ],
        }
        steps = run_client("triton-repository", f"127.0.0.1:{port}", job)["steps"]
    finally:
        stop_server(server)
    outcomes = [step["outcome"].split(":")[0] for step in steps]
    assert outcomes == [
        "StatusCode.UNAUTHENTICATED",
        "StatusCode.UNAUTHENTICATED",
        "OK",
        "StatusCode.UNAUTHENTICATED",
        "OK",
    ]
    assert "Authorization: Bearer <COUNTER_ADMIN_TOKEN>" in steps[0]["outcome"]
    states = [step["index"]["counter-post"] for step in steps]
    assert states == ["READY", "READY", "UNAVAILABLE", "UNAVAILABLE", "READY"]
