"""The Open Inference Protocol's gRPC service (inference.GRPCInferenceService) on grpc's
synchronous server: its calls (app.grpc.calls) run on a pool of handler threads.

It runs in the REST server's own process (started by the lifespan, beside the event loop), over
the same CounterService, so both protocols share the models and admission control, and give the
same answers. grpc's synchronous server costs less CPU per call than grpc.aio's
(docs/benchmarks.md, `python -m bench.grpc_floor`), and a handler thread answers a small call
itself, sharing model runs with the other threads (app.grpc.threads), where grpc.aio handed
the loop each call's events a turn apart. Against hostile clients:
- a size cap per message (app.grpc.calls) and, a little above it, grpc's own transport cap as a
  backstop;
- a cap on streams per connection (COUNTER_GRPC_MAX_STREAMS, the HTTP/2 setting) and on calls
  in progress over all (COUNTER_GRPC_MAX_CALLS; past it RESOURCE_EXHAUSTED at once). Every call
  in progress holds a thread, so the pool may grow to that many (threads start as calls need
  them); past a few more than that, grpc itself refuses (RESOURCE_EXHAUSTED) before any thread;
- a call's message must come within COUNTER_GRPC_MESSAGE_TIMEOUT_SECONDS: grpc hands a call
  a thread as soon as its headers are in, and the thread waits inside grpc for the message,
  which grpc bounds by nothing; so every connection is told to go away after about that long
  and closed a while later, ending the calls still on it (connection_age);
- the client's deadline: a run still going when it passes is stopped, and never outlives
  COUNTER_MAX_RUN_SECONDS either;
- on SIGTERM (the service starts draining) the server stops taking calls and lets those in
  progress finish, for up to COUNTER_MAX_RUN_SECONDS.
"""

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import grpc

from app import workers
from app.grpc.calls import SERVICE_NAME, Calls
from app.runtime.repository import Repository
from app.runtime.service import CounterService
from app.settings import Settings

__all__ = ["SERVICE_NAME", "GrpcServer", "start"]

log = logging.getLogger(__name__)

TRANSPORT_SLACK = 64 * 1024  # grpc's own cap sits this far above the setting's
CALLS_SLACK = 16  # threads past COUNTER_GRPC_MAX_CALLS: refusals there name the setting
DRAIN_POLL_S = 0.05
INT_MAX = 2**31 - 1  # grpc's integer channel arguments are C ints


class GrpcServer:
    """The running gRPC server: started with the service, stopped (draining) with it."""

    def __init__(self, server: grpc.Server, service: CounterService, grace: float) -> None:
        self.server = server
        self.grace = grace
        self._watch = asyncio.ensure_future(self._drain_when(service))

    async def _drain_when(self, service: CounterService) -> None:
        """SIGTERM sets service.draining (app.http.server): stop taking calls then, not at exit."""
        while not service.draining:
            await asyncio.sleep(DRAIN_POLL_S)
        log.info("gRPC: draining for up to %g s", self.grace)
        await self._stopped()

    async def _stopped(self) -> None:
        """Stop and wait off the loop: the calls in progress may need the loop to finish."""
        await asyncio.to_thread(self.server.stop(self.grace).wait)

    async def stop(self) -> None:
        self._watch.cancel()
        await self._stopped()


def connection_age(settings: Settings) -> list[tuple[str, int]]:
    """grpc's connection age, the only bound grpc puts on a call whose message never comes.

    After about COUNTER_GRPC_MESSAGE_TIMEOUT_SECONDS (grpc adds +-10%) a connection is sent
    GOAWAY: its clients open new calls on a new connection (grpc's clients by themselves).
    The calls already on it have that long again plus COUNTER_MAX_RUN_SECONDS, time to send
    their message and run, before it is closed; grpc then ends those left (UNAVAILABLE, "max
    connection age") and their threads come back. So a call that never sends its message holds
    its thread at most 2.1 x the setting + COUNTER_MAX_RUN_SECONDS, and a call whose message
    comes within the setting is never cut before its run's own limit.
    """
    age = settings.grpc_message_timeout_seconds
    grace = age + settings.max_run_seconds
    return [
        ("grpc.max_connection_age_ms", round(age * 1000)),
        ("grpc.max_connection_age_grace_ms", min(round(grace * 1000), INT_MAX)),
    ]


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def start(
    service: CounterService, repository: Repository, settings: Settings, version: str
) -> GrpcServer:
    """Listen on COUNTER_GRPC_PORT and serve until stopped."""
    assert settings.grpc_port is not None
    options = [
        ("grpc.max_receive_message_length", settings.grpc_max_message_bytes + TRANSPORT_SLACK),
        ("grpc.max_send_message_length", -1),
        ("grpc.max_concurrent_streams", settings.grpc_max_streams),
        # A second server on the port is an error, not a share; except between the workers of
        # app.workers, which share it as they share the HTTP port (the kernel spreads clients).
        ("grpc.so_reuseport", 1 if workers.is_worker() else 0),
        *connection_age(settings),
    ]
    threads = settings.grpc_max_calls + CALLS_SLACK
    server = grpc.server(
        ThreadPoolExecutor(threads, thread_name_prefix="grpc"),
        options=options,
        maximum_concurrent_rpcs=threads,
    )
    calls = Calls(service, repository, settings, version, asyncio.get_running_loop())
    # Registered methods: grpc's core matches each call to its method, where a generic
    # handler is looked up in Python per call (docs/benchmarks.md).
    server.add_registered_method_handlers(SERVICE_NAME, calls.handlers())
    address = _address(settings.host, settings.grpc_port)
    try:
        server.add_insecure_port(address)
    except RuntimeError:
        raise RuntimeError(
            f"cannot listen for gRPC on {address} (COUNTER_GRPC_PORT): the port is in use "
            "or not allowed"
        ) from None
    server.start()
    log.info("gRPC: serving the V2 protocol on port %d", settings.grpc_port)
    return GrpcServer(server, service, settings.max_run_seconds)
