"""The counter on Ray Serve (deploy/ray/counter_serve.py) on a real two-node local cluster.

One cluster for the module: a head and a worker node, each a `ray start` process with one CPU;
a replica takes a CPU and a node holds at most one, so two replicas are one per node. Every
request goes through Serve's HTTP proxy on the head, on loopback. The tests run in this order:
answers, autoscaling (its own application, the head and worker as they are), then the node
failure, which kills and replaces the worker node.
"""

import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ray.cluster import DEPLOY_RAY, NETNS, Cluster, free_port

ray = pytest.importorskip("ray", reason="the ray extra (pip install 'rnn-counter[ray]')")
serve = pytest.importorskip("ray.serve")

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    # Ray's processes reach each other through the machine's interface address even when told
    # 127.0.0.1; these tests run inside tests/ray/test_loopback_only.py's network namespace,
    # where loopback is the only interface there is.
    pytest.mark.skipif(
        os.environ.get(NETNS) != "1",
        reason="runs inside test_loopback_only.py's network namespace (loopback only)",
    ),
    # serve.yaml sets metrics_interval_s, which Ray 2.60 still reads and warns will move.
    pytest.mark.filterwarnings("ignore:The `metrics_interval_s` field:DeprecationWarning"),
]

WITHIN_S = 120.0
LOAD_THREADS = 4  # the steady load's concurrency: at most this many requests in flight
# Held inputs: every route family, edge cases of carries and lengths, and both models.
HELD: list[tuple[str, bytes]] = [
    ("/increment", b'{"number": "0"}'),
    ("/increment", b'{"number": "1999"}'),
    ("/increment", b'{"number": "99999999999999999999"}'),
    ("/increment", b'{"number": "1476233999", "detail": "summary"}'),
    ("/increment", b'{"number": "' + b"9" * 5000 + b'", "detail": "none"}'),
    ("/increment", b'{"number": "123", "model": "counter-post"}'),
    ("/increment/batch", b'{"numbers": ["0", "9", "1999", "12345678901234567890"]}'),
    ("/increment/batch", b'{"numbers": ["99", "100"], "detail": "digits"}'),
    (
        "/v2/models/counter/infer",
        b'{"inputs": [{"name": "digits", "shape": [1, 5], "datatype": "INT64",'
        b' "data": [9, 9, 9, 1, 0]}]}',
    ),
    (
        "/v2/models/counter/infer",
        b'{"inputs": [{"name": "digits", "shape": [2, 3], "datatype": "INT64",'
        b' "data": [9, 9, 0, 1, 2, 0]}]}',
    ),
]


def post(base: str, path: str, body: bytes, timeout: float = 30) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"{base}{path}", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read()


def wait_for(condition: Callable[[], bool], what: str, within: float = WITHIN_S) -> float:
    """Seconds until condition() held; fails after `within`."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < within, f"not within {within:g} s: {what}"
        time.sleep(0.2)
    return time.monotonic() - began


def running(app_name: str) -> int:
    """Replicas RUNNING in the application's deployment, as Serve's controller says."""
    status = serve.status().applications.get(app_name)
    if status is None:
        return 0
    deployment = status.deployments.get("counter")
    return 0 if deployment is None else int(deployment.replica_states.get("RUNNING", 0))


@dataclass
class Served:
    cluster: Cluster
    base: str  # Serve's proxy
    counter_serve: Any


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """The cluster, a driver connected to it, Serve's proxy on loopback and the counter
    deployed with two replicas; all of it stopped at the end, whatever happened."""
    folder = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))  # short: Ray's socket paths
    cluster = Cluster(folder)
    try:
        cluster.start_node()
        cluster.start_node()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ray.init(
                address=cluster.address,
                log_to_driver=False,
                _node_ip_address="127.0.0.1",
                include_dashboard=False,
            )
        sys.path.insert(0, str(DEPLOY_RAY))
        import counter_serve

        port = free_port()
        counter_serve.deploy(port)
        yield Served(cluster, f"http://127.0.0.1:{port}", counter_serve)
    finally:
        try:
            if ray.is_initialized():
                serve.shutdown()
                ray.shutdown()
        finally:
            cluster.stop()
            shutil.rmtree(folder, ignore_errors=True)  # the nodes' logs and sockets


@pytest.fixture(scope="module")
def direct() -> Iterator[Any]:
    """The single-process service (app.main.create_app), for the answers to equal."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import Settings

    with TestClient(create_app(Settings())) as client:
        yield client


def test_two_replicas_one_per_node_answer_byte_for_byte_as_the_service(
    served: Served, direct: Any
) -> None:
    assert running("counter") == 2
    head, worker = served.cluster.nodes
    assert (len(head.replicas("counter")), len(worker.replicas("counter"))) == (1, 1)
    for path, body in HELD:
        expected = direct.post(path, content=body, headers={"Content-Type": "application/json"})
        assert expected.status_code == 200, expected.content
        for _ in range(4):  # the proxy picks a replica per request: ask each more than once
            status, answer = post(served.base, path, body)
            assert (status, answer) == (200, expected.content), (path, body[:80])
    # A refusal is the service's too (its request id aside).
    status, answer = post(served.base, "/increment", b'{"number": "12a"}')
    assert status == 422
    assert answer.startswith(b'{"error":"invalid_number"')


@dataclass
class Load:
    """A steady, bounded load on /increment: LOAD_THREADS clients, one request at a time each,
    every answer checked against the number plus one."""

    base: str
    answered: list[float] = field(default_factory=list)  # when each right answer came
    wrong: list[str] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    digits: int = 20  # at most 4300: Python's int <-> str limit, for the check
    threads: int = LOAD_THREADS

    def client(self, seed: int) -> None:
        n = seed
        while not self.stop.is_set():
            n += 7919
            number = str(n).rjust(self.digits, "9")
            body = f'{{"number": "{number}", "detail": "none"}}'.encode()
            try:
                status, answer = post(self.base, "/increment", body, timeout=30)
            except Exception as exc:  # a failed request, whatever the failure: counted
                self.errors.append((time.monotonic(), repr(exc)))
                continue
            if status != 200:
                self.errors.append((time.monotonic(), f"{status} {answer[:120]!r}"))
            elif f'"output":"{int(number) + 1}"'.encode() not in answer:
                self.wrong.append(number)
            else:
                self.answered.append(time.monotonic())

    def __enter__(self) -> "Load":
        self.clients = [
            threading.Thread(target=self.client, args=(i * 1_000_003,), daemon=True)
            for i in range(self.threads)
        ]
        for thread in self.clients:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.clients:
            thread.join(timeout=60)


def test_autoscaling_goes_from_one_replica_to_two_under_load_and_back(served: Served) -> None:
    """serve.yaml's autoscaling_config, deployed as its own application beside the first."""
    config = yaml.safe_load((DEPLOY_RAY / "serve.yaml").read_text())
    (deployment,) = config["applications"][0]["deployments"]
    autoscaling = deployment["autoscaling_config"]
    options = {k: v for k, v in deployment.items() if k != "name"}
    # The first application's two replicas hold both CPUs: it makes way, and comes back after.
    serve.delete("counter")
    serve.run(served.counter_serve.app(options), name="scaled", route_prefix="/")
    wait_for(lambda: running("scaled") == 1, "the autoscaled application up")
    base = served.base
    # Up: more requests in flight per replica than the target, for longer than the delay;
    # it may take the delay, the metrics' look-back and a replica's start.
    up_within = autoscaling["upscale_delay_s"] + autoscaling["look_back_period_s"] + 60
    load = Load(base, digits=4000, threads=3 * LOAD_THREADS)
    with load:
        took_up = wait_for(lambda: running("scaled") == 2, "scale up to 2", up_within)
    assert load.wrong == []
    assert load.errors == []
    # Down: idle for the downscale delay, then one replica stops (after its drain).
    down_within = autoscaling["downscale_delay_s"] + autoscaling["look_back_period_s"] + 60
    took_down = wait_for(lambda: running("scaled") == 1, "scale down to 1", down_within)
    print(f"autoscaling: up in {took_up:.1f} s under load, down in {took_down:.1f} s idle")
    serve.delete("scaled")
    serve.run(served.counter_serve.app(), name="counter", route_prefix="/")
    wait_for(lambda: running("counter") == 2, "the first application back to two replicas")


def test_a_dead_node_costs_only_its_in_flight_requests_and_its_replica_comes_back(
    served: Served,
) -> None:
    cluster = served.cluster
    worker = cluster.nodes[1]
    wait_for(lambda: len(worker.replicas("counter")) == 1, "a replica on the worker node")
    with Load(served.base) as load:
        wait_for(lambda: len(load.answered) >= 50, "the load under way")
        killed_at = time.monotonic()
        os.kill(worker.raylet(), 9)
        # The head's replica answers on: 200 more right answers after the kill.
        wait_for(
            lambda: sum(t > killed_at for t in load.answered) >= 200,
            "answers from the surviving replica",
        )
    assert load.wrong == []
    # Only requests in flight on the dead node fail: at most one per client, at the kill.
    late = [e for t, e in load.errors if t > killed_at + 30]
    assert late == []
    assert len(load.errors) <= LOAD_THREADS, load.errors
    print(f"node failure: {len(load.errors)} failed request(s) of the in-flight: {load.errors}")
    # A node comes back: the replica count recovers, on it.
    worker.stop()
    cluster.nodes.remove(worker)
    back = cluster.start_node()
    wait_for(lambda: running("counter") == 2, "two replicas again")
    wait_for(lambda: len(back.replicas("counter")) == 1, "a replica on the new node")
    for path, body in HELD[:3]:
        assert post(served.base, path, body)[0] == 200
