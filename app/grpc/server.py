"""The Open Inference Protocol's gRPC service (inference.GRPCInferenceService) on grpc.aio.

It runs in the REST server's own process and event loop (started by the lifespan), over the
same CounterService, so both protocols share the models, the batchers and admission control,
and give the same answers. Each call reads its request's bytes itself rather than through a
generated servicer: a message that is not a valid protobuf is INVALID_ARGUMENT (grpc's own
deserializer would answer INTERNAL), and a message past COUNTER_GRPC_MAX_MESSAGE_BYTES is
refused naming that setting. Triton's ModelConfig (minimal, as REST's GET
/v2/models/{name}/config: what perf_analyzer asks first) and its repository calls
(RepositoryIndex, RepositoryModelLoad, RepositoryModelUnload) are served too, the latter over
app.runtime.repository as REST's, the operator's token in the call's `authorization` metadata.
Against hostile clients:
- a size cap per message (above) and, a little above it, grpc's own transport cap as a backstop;
- a cap on streams per connection (COUNTER_GRPC_MAX_STREAMS, the HTTP/2 setting) and on calls
  in progress over all (COUNTER_GRPC_MAX_CALLS; past it RESOURCE_EXHAUSTED at once);
- the client's deadline: a run still going when it passes is stopped, and never outlives
  COUNTER_MAX_RUN_SECONDS either;
- a refusal is a status with a message, never INTERNAL or UNKNOWN: each kind of ServiceError has
  its status (STATUS below);
- on SIGTERM (the service starts draining) the server stops taking calls and lets those in
  progress finish, for up to COUNTER_MAX_RUN_SECONDS.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message
from grpc import StatusCode as Code
from grpc import aio

from app import tracing, workers
from app.api.inference import Inference, find_model
from app.api.tensors import SERVER, model_config, model_metadata
from app.errors import Kind, ServiceError
from app.grpc import tensors
from app.grpc.v2 import grpc_predict_v2_pb2 as pb
from app.grpc.v2 import model_config_pb2 as config_pb
from app.grpc.v2 import model_repository_pb2 as repo_pb
from app.metrics import ERRORS
from app.runtime.repository import Repository, authorize
from app.runtime.service import CounterService
from app.settings import Settings

log = logging.getLogger(__name__)

SERVICE_NAME = "inference.GRPCInferenceService"
EXTENSIONS = ["binary_tensor_data"]  # as GET /v2 says: the same server
TRANSPORT_SLACK = 64 * 1024  # grpc's own cap sits this far above the setting's
DRAIN_POLL_S = 0.05

STATUS: dict[Kind, Code] = {
    Kind.MALFORMED_JSON: Code.INVALID_ARGUMENT,
    Kind.MALFORMED_TENSOR: Code.INVALID_ARGUMENT,
    Kind.MODEL_REFUSED: Code.FAILED_PRECONDITION,
    Kind.UNAUTHORIZED: Code.UNAUTHENTICATED,
    Kind.FORBIDDEN: Code.PERMISSION_DENIED,
    Kind.INVALID_NUMBER: Code.INVALID_ARGUMENT,
    Kind.INVALID_REQUEST: Code.INVALID_ARGUMENT,
    Kind.TOO_MANY_ITEMS: Code.INVALID_ARGUMENT,
    Kind.BATCH_TOO_LARGE: Code.INVALID_ARGUMENT,
    Kind.TOO_MUCH_DETAIL: Code.INVALID_ARGUMENT,
    Kind.UNSUPPORTED_MEDIA_TYPE: Code.INVALID_ARGUMENT,
    Kind.UNKNOWN_MODEL: Code.NOT_FOUND,
    Kind.NOT_FOUND: Code.NOT_FOUND,
    Kind.METHOD_NOT_ALLOWED: Code.UNIMPLEMENTED,
    Kind.BODY_TOO_LARGE: Code.RESOURCE_EXHAUSTED,
    Kind.HEADERS_TOO_LARGE: Code.RESOURCE_EXHAUSTED,
    Kind.OVERLOADED: Code.RESOURCE_EXHAUSTED,
    Kind.CLIENT_DISCONNECTED: Code.CANCELLED,
    Kind.TIMED_OUT: Code.DEADLINE_EXCEEDED,
    Kind.NOT_READY: Code.UNAVAILABLE,
    Kind.INTERNAL: Code.INTERNAL,
}

Handler = Callable[[Any, aio.ServicerContext], Awaitable[Message | bytes]]


class Calls:
    """The six calls, each from request bytes to response bytes, over one CounterService."""

    def __init__(
        self, service: CounterService, repository: Repository, settings: Settings, version: str
    ) -> None:
        self.service = service
        self.repository = repository
        self.settings = settings
        self.version = version
        self.in_progress = 0
        # grpc.aio hands the loop each call's events apart, so calls seldom meet in one loop
        # turn: while they share runs, a run waits this long for more (app.runtime.batcher).
        self.gather = settings.grpc_batch_window_ms / 1000

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        calls: dict[str, tuple[type[Message], Handler]] = {
            "ServerLive": (pb.ServerLiveRequest, self.server_live),
            "ServerReady": (pb.ServerReadyRequest, self.server_ready),
            "ModelReady": (pb.ModelReadyRequest, self.model_ready),
            "ServerMetadata": (pb.ServerMetadataRequest, self.server_metadata),
            "ModelMetadata": (pb.ModelMetadataRequest, self.model_metadata),
            "ModelInfer": (pb.ModelInferRequest, self.model_infer),
            "ModelConfig": (config_pb.ModelConfigRequest, self.model_config),
            "RepositoryIndex": (repo_pb.RepositoryIndexRequest, self.repository_index),
            "RepositoryModelLoad": (repo_pb.RepositoryModelLoadRequest, self.repository_load),
            "RepositoryModelUnload": (
                repo_pb.RepositoryModelUnloadRequest,
                self.repository_unload,
            ),
        }
        return {
            name: grpc.unary_unary_rpc_method_handler(
                tracing.traced_call(name, self._guarded(kind, handler))
            )
            for name, (kind, handler) in calls.items()
        }

    def _guarded(
        self, kind: type[Message], handler: Handler
    ) -> Callable[[bytes, aio.ServicerContext], Awaitable[bytes]]:
        """The call with the caps, its bytes parsed here, and every refusal as a status."""
        cap = self.settings.grpc_max_message_bytes

        async def call(raw: bytes, context: aio.ServicerContext) -> bytes:
            try:
                if len(raw) > cap:
                    raise ServiceError(
                        Kind.BODY_TOO_LARGE,
                        f"the request message is {len(raw)} bytes, more than the limit of "
                        f"{cap} (COUNTER_GRPC_MAX_MESSAGE_BYTES)",
                    )
                limit = self.settings.grpc_max_calls
                if self.in_progress >= limit:
                    raise ServiceError(
                        Kind.OVERLOADED,
                        f"the service is busy: {self.in_progress} gRPC calls are in progress, "
                        f"the limit is {limit} (COUNTER_GRPC_MAX_CALLS); retry shortly",
                    )
                try:
                    message = kind.FromString(raw)
                except (DecodeError, RecursionError) as exc:
                    raise ServiceError(
                        Kind.INVALID_REQUEST,
                        f"the request is not a valid {kind.DESCRIPTOR.full_name} message ({exc})",
                    ) from None
                self.in_progress += 1
                try:
                    async with self.service.admitted(len(raw)):
                        reply = await handler(message, context)
                    return reply if isinstance(reply, bytes) else reply.SerializeToString()
                finally:
                    self.in_progress -= 1
            except ServiceError as exc:
                ERRORS.labels(exc.kind.label).inc()
                await context.abort(STATUS[exc.kind], exc.message)
                raise  # abort raises; this line is never reached
            except (asyncio.CancelledError, aio.AbortError):
                raise
            except Exception:
                log.exception("gRPC %s failed", kind.DESCRIPTOR.name)
                ERRORS.labels(Kind.INTERNAL.label).inc()
                await context.abort(Code.INTERNAL, "the service failed on this call; it is logged")
                raise

        return call

    async def server_live(self, _: Any, __: aio.ServicerContext) -> Message:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, _: Any, __: aio.ServicerContext) -> Message:
        return pb.ServerReadyResponse(ready=self.service.ready)

    async def model_ready(self, request: Any, _: aio.ServicerContext) -> Message:
        model = find_model(self.service, request.name, request.version or None)
        return pb.ModelReadyResponse(ready=model is not None)

    async def server_metadata(self, _: Any, __: aio.ServicerContext) -> Message:
        return pb.ServerMetadataResponse(name=SERVER, version=self.version, extensions=EXTENSIONS)

    async def model_metadata(self, request: Any, _: aio.ServicerContext) -> Message:
        model = find_model(self.service, request.name, request.version or None)
        described = model_metadata(model, self.service.versions(model.card.name))
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=described["name"],
            versions=described["versions"],
            platform=described["platform"],
            inputs=[tensor(**t) for t in described["inputs"]],
            outputs=[tensor(**t) for t in described["outputs"]],
        )

    async def model_config(self, request: Any, _: aio.ServicerContext) -> Message:
        """Triton's model configuration, minimal (REST's GET /v2/models/{name}/config)."""
        described = model_config(find_model(self.service, request.name, request.version or None))
        return config_pb.ModelConfigResponse(
            config=config_pb.ModelConfig(
                name=described["name"],
                platform=described["platform"],
                backend=described["backend"],
                max_batch_size=described["max_batch_size"],
                input=[
                    config_pb.ModelInput(
                        name=t["name"],
                        data_type=t["data_type"],
                        dims=t["dims"],
                        optional=t["optional"],
                    )
                    for t in described["input"]
                ],
                output=[
                    config_pb.ModelOutput(name=t["name"], data_type=t["data_type"], dims=t["dims"])
                    for t in described["output"]
                ],
            )
        )

    async def model_infer(self, request: Any, context: aio.ServicerContext) -> bytes:
        version = request.model_version or None
        model = find_model(self.service, request.model_name, version)
        if tracing.TRACER is None:  # off: the plain calls, not even a do-nothing `with`
            infer = tensors.read_request(request)
            inference = Inference(self.service, infer)
        else:
            with tracing.span("parse"):
                infer = tensors.read_request(request)
                inference = Inference(self.service, infer)
        stop = asyncio.Event()
        remaining = context.time_remaining()
        timer = None
        if remaining is not None:  # the client's deadline: stop a run still going then
            timer = asyncio.get_running_loop().call_later(max(0.0, remaining), stop.set)
        try:
            outputs = await inference.run(self.service, model, stop, version, self.gather)
        except ServiceError as exc:
            if exc.kind is Kind.CLIENT_DISCONNECTED:
                raise ServiceError(
                    Kind.TIMED_OUT, "the call's deadline passed and its run was stopped"
                ) from None
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if tracing.TRACER is None:
            return tensors.write_response(model.card.name, model.card.version, infer.id, outputs)
        with tracing.span("answer"):
            return tensors.write_response(model.card.name, model.card.version, infer.id, outputs)

    async def repository_index(self, request: Any, _: aio.ServicerContext) -> Message:
        index = repo_pb.RepositoryIndexResponse.ModelIndex
        return repo_pb.RepositoryIndexResponse(
            models=[
                index(name=e.name, version=e.version, state=e.state, reason=e.reason)
                for e in self.repository.index()
                if not request.ready or e.state == "READY"
            ]
        )

    def _operator(self, context: aio.ServicerContext) -> None:
        """The bearer token in the call's metadata, as REST's Authorization header."""
        header = dict(context.invocation_metadata() or ()).get("authorization")
        authorize(header, self.settings)

    async def repository_load(self, request: Any, context: aio.ServicerContext) -> Message:
        self._operator(context)
        await self.repository.load(request.model_name)
        return repo_pb.RepositoryModelLoadResponse()

    async def repository_unload(self, request: Any, context: aio.ServicerContext) -> Message:
        self._operator(context)
        await self.repository.unload(request.model_name)
        return repo_pb.RepositoryModelUnloadResponse()


class GrpcServer:
    """The running gRPC server: started with the service, stopped (draining) with it."""

    def __init__(self, server: aio.Server, service: CounterService, grace: float) -> None:
        self.server = server
        self.grace = grace
        self._watch = asyncio.ensure_future(self._drain_when(service))

    async def _drain_when(self, service: CounterService) -> None:
        """SIGTERM sets service.draining (app.http.server): stop taking calls then, not at exit."""
        while not service.draining:
            await asyncio.sleep(DRAIN_POLL_S)
        log.info("gRPC: draining for up to %g s", self.grace)
        await self.server.stop(self.grace)

    async def stop(self) -> None:
        self._watch.cancel()
        await self.server.stop(self.grace)


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
    ]
    server = aio.server(options=options)
    handler = grpc.method_handlers_generic_handler(
        SERVICE_NAME, Calls(service, repository, settings, version).handlers()
    )
    server.add_generic_rpc_handlers((handler,))
    address = _address(settings.host, settings.grpc_port)
    try:
        server.add_insecure_port(address)
    except RuntimeError:
        raise RuntimeError(
            f"cannot listen for gRPC on {address} (COUNTER_GRPC_PORT): the port is in use "
            "or not allowed"
        ) from None
    await server.start()
    log.info("gRPC: serving the V2 protocol on port %d", settings.grpc_port)
    return GrpcServer(server, service, settings.max_run_seconds)
