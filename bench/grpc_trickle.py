"""Clients that trickle gRPC calls' messages against honest tritonclient clients, on the real
server: how long each trickled call held its handler thread, and what the honest calls got.

grpc's synchronous server gives a call a thread once its headers are in, and the thread waits
for the message; COUNTER_GRPC_MESSAGE_TIMEOUT_SECONDS bounds that wait (app/grpc/server.py,
connection_age). Two servers in turn: the setting at --timeout, then at its largest (600 s),
which over a run this short is no bound at all (the code before it). Each gets --calls trickled
calls, one every --every seconds, each on a connection of its own that answers pings (the
raw HTTP/2 client of tests/app/grpc_trickler.py), while --honest threads call ModelInfer on one
tritonclient channel. COUNTER_GRPC_MAX_CALLS is small so that a modest count of trickled calls
reaches grpc's own cap (that + 16 calls holding threads).

    python -m bench.grpc_trickle [--timeout 1] [--run-seconds 1] [--calls 40] [--every 0.4]
"""

import argparse
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from app.settings import DEFAULT_MODELS_DIR
from bench.host import Steal
from tests.app.grpc_trickler import Tricklers
from tests.app.server import free_port, start_server, stop_server

PAUSE_S = 0.01  # between one honest thread's calls: a steady load, not the whole CPU
AT_ONCE_S = 0.5  # a trickled call ended sooner was refused at its start (grpc's cap)


def _honest(address: str, tricklers: Tricklers, threads: int) -> Counter[str]:
    """ModelInfer from `threads` threads on one channel while the calls are being trickled."""
    client = triton.InferenceServerClient(address)
    outcomes: Counter[str] = Counter()

    def loop() -> None:
        number = triton.InferInput("number", [1], "BYTES")
        number.set_data_from_numpy(np.array([b"1299"], dtype=object))
        while tricklers.opening.is_set():
            try:
                answer = client.infer("counter", [number]).as_numpy("output")
                outcomes["OK" if answer[0] == b"1300" else "wrong"] += 1
            except InferenceServerException as exc:  # counted by what the client saw
                outcomes[f"{exc.status()} {exc.message()}"] += 1
            time.sleep(PAUSE_S)

    tricklers.opening.wait(10)
    running = [threading.Thread(target=loop) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    client.close()
    return outcomes


def run(timeout: float, args: argparse.Namespace, folder: Path) -> str:
    port = free_port()
    server, _ = start_server(
        DEFAULT_MODELS_DIR,
        folder / f"server-{timeout:g}.log",
        COUNTER_GRPC_PORT=str(port),
        COUNTER_GRPC_MAX_CALLS=str(args.max_calls),
        COUNTER_GRPC_MESSAGE_TIMEOUT_SECONDS=str(timeout),
        COUNTER_MAX_RUN_SECONDS=str(args.run_seconds),
        COUNTER_ACCESS_LOG="false",
    )
    try:
        tricklers = Tricklers(port, args.calls, args.every, watch=args.watch)
        tricklers.start()
        outcomes = _honest(f"127.0.0.1:{port}", tricklers, args.honest)
        tricklers.join()
    finally:
        stop_server(server)
    ends = [h for h in tricklers.held_for() if h is not None]
    refused = sum(h < AT_ONCE_S for h in ends)
    held = [h for h in ends if h >= AT_ONCE_S]
    ended = f"{refused} refused at once, {len(held)} ended later"
    if held:
        ended += f" (held {min(held):.2f} / {statistics.median(held):.2f} / {max(held):.2f} s)"
    ended += f", {args.calls - len(ends)} still held {args.watch:g} s after the last opened"
    return f"setting {timeout:g} s: trickled calls: {ended}; honest calls: {dict(outcomes)}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--timeout", type=float, default=1.0, help="the setting, seconds")
    parser.add_argument("--run-seconds", type=float, default=1.0, help="COUNTER_MAX_RUN_SECONDS")
    parser.add_argument("--calls", type=int, default=40, help="trickled calls")
    parser.add_argument("--every", type=float, default=0.4, help="seconds between them")
    parser.add_argument("--max-calls", type=int, default=2, help="COUNTER_GRPC_MAX_CALLS")
    parser.add_argument("--honest", type=int, default=2, help="honest client threads")
    parser.add_argument("--watch", type=float, default=20.0, help="seconds to wait for the ends")
    args = parser.parse_args()
    print(
        f"{args.calls} trickled calls one every {args.every} s, COUNTER_GRPC_MAX_CALLS="
        f"{args.max_calls}, COUNTER_MAX_RUN_SECONDS={args.run_seconds}; held: min / median / max"
    )
    steal = Steal.start()
    with tempfile.TemporaryDirectory() as folder:
        for timeout in (args.timeout, 600.0):
            print(run(timeout, args, Path(folder)), flush=True)
    print(steal.sentence())


if __name__ == "__main__":
    main()
