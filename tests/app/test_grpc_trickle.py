"""Clients that trickle a gRPC call's message, against a real server: grpc hands each such call
a handler thread until its message is in, so COUNTER_GRPC_MESSAGE_TIMEOUT_SECONDS bounds how
long (app/grpc/server.py, connection_age). Trickled calls are ended, honest calls are answered
all the while, and the clients users run keep working on connections told to go away."""

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.app.grpc_clients import run_client
from tests.app.grpc_messages import SERVICE, number_request
from tests.app.grpc_trickler import Tricklers
from tests.app.server import free_port, start_server, stop_server

pytestmark = pytest.mark.server
MESSAGE_TIMEOUT_S = 1.0
RUN_S = 1.0
MAX_CALLS = 2  # grpc itself refuses past MAX_CALLS + 16 calls holding threads
# A call that never sends its message is ended within 2.1 x MESSAGE_TIMEOUT_S + RUN_S (3.1 s):
# room for a host many times busier, and far short of never.
ENDED_WITHIN_S = 20.0


@pytest.fixture(scope="module")
def port(shipped: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    log = tmp_path_factory.mktemp("grpc_trickle") / "server.log"
    server, _ = start_server(
        shipped,
        log,
        COUNTER_GRPC_PORT=str(port),
        COUNTER_GRPC_MAX_CALLS=str(MAX_CALLS),
        COUNTER_GRPC_MESSAGE_TIMEOUT_SECONDS=str(MESSAGE_TIMEOUT_S),
        COUNTER_MAX_RUN_SECONDS=str(RUN_S),
        COUNTER_ACCESS_LOG="false",
    )
    yield port
    stop_server(server)


def test_trickled_calls_are_ended_and_honest_calls_answered_meanwhile(port: int) -> None:
    """40 trickled calls, one every 0.4 s: 18 would hold every thread grpc gives (after 7 s,
    unbounded), a bound of about 3 s keeps about 8 held. An honest client calling on one
    channel all the while gets every answer."""
    tricklers = Tricklers(port, count=40, every=0.4, watch=ENDED_WITHIN_S)
    tricklers.start()
    assert tricklers.opening.wait(10)
    outcomes = []
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        infer = channel.unary_unary(SERVICE + "ModelInfer")
        while tricklers.opening.is_set():
            try:
                reply = infer(number_request("1299"), timeout=30)
                outcomes.append("OK" if b"1300" in reply else f"wrong answer: {reply!r}")
            except grpc.RpcError as error:
                outcomes.append(f"{error.code().name}: {error.details()}")
            time.sleep(0.2)
    tricklers.join()
    assert len(outcomes) > 20  # the honest client called throughout
    assert [o for o in outcomes if o != "OK"] == []
    held = tricklers.held_for()
    assert len(held) == 40
    assert all(h is not None and h < ENDED_WITHIN_S for h in held), held


def test_tritonclient_keeps_working_across_connections_told_to_go_away(port: int) -> None:
    """Every connection is sent GOAWAY after about MESSAGE_TIMEOUT_S: tritonclient's clients
    (sync, then asyncio) call ModelInfer for 3 s each on one channel, across two or more."""
    job = {"model": "counter", "input": "number", "data": ["1299", "99"], "seconds": 3.0}
    got = run_client("triton-repeat", f"127.0.0.1:{port}", job)
    assert got["errors"] == []
    assert got["answers"]["sync"] > 0
    assert got["answers"]["aio"] > 0
