"""The gRPC service's calls (inference.GRPCInferenceService), on grpc's handler threads
(app.grpc.server), over the REST server's CounterService.

Each call reads its request's bytes itself rather than through a generated servicer: a message
that is not a valid protobuf is INVALID_ARGUMENT (grpc's own deserializer would answer
INTERNAL), and a message past COUNTER_GRPC_MAX_MESSAGE_BYTES is refused naming that setting;
past COUNTER_GRPC_MAX_CALLS calls in progress, RESOURCE_EXHAUSTED at once. A refusal is a
status with a message, never INTERNAL or UNKNOWN: each kind of ServiceError has its status
(STATUS below). Triton's ModelConfig (minimal, as REST's GET /v2/models/{name}/config: what
perf_analyzer asks first) and its repository calls (RepositoryIndex, RepositoryModelLoad,
RepositoryModelUnload) are served too, the latter over app.runtime.repository as REST's, the
operator's token in the call's `authorization` metadata.

Where each call runs: the metadata calls and a ModelInfer whose run is at most INLINE_STEPS
digit steps on the handler thread (its run shared with the threads queued meanwhile:
app.grpc.threads); on the service's event loop, the thread waiting, the repository calls, a
body past app.runtime.admission's LARGE_BODY (under the loop's admission control) and a longer
run (the service places it, in a worker thread under COUNTER_MAX_PENDING_STEPS, stopped at the
client's deadline). A call that ends first (the client went away, its deadline passed) cancels
its work on the loop.
"""

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message
from grpc import StatusCode as Code

from app import tracing
from app.api.inference import Inference, find_model
from app.api.tensors import SERVER, OutputTensor, model_config, model_metadata
from app.errors import Kind, ServiceError
from app.grpc import tensors
from app.grpc.threads import Runs
from app.grpc.v2 import grpc_predict_v2_pb2 as pb
from app.grpc.v2 import model_config_pb2 as config_pb
from app.grpc.v2 import model_repository_pb2 as repo_pb
from app.metrics import ERRORS
from app.runtime.admission import LARGE_BODY
from app.runtime.models import LoadedModel
from app.runtime.repository import Repository, authorize
from app.runtime.service import INLINE_STEPS, CounterService
from app.settings import Settings

log = logging.getLogger(__name__)

SERVICE_NAME = "inference.GRPCInferenceService"
EXTENSIONS = ["binary_tensor_data"]  # as GET /v2 says: the same server
T = TypeVar("T")

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

Sync = Callable[[Any, grpc.ServicerContext], Message | bytes]
OnLoop = Callable[[Any, grpc.ServicerContext], Awaitable[Message | bytes]]


class Calls:
    """The calls, each from request bytes to response bytes, over one CounterService: on grpc's
    handler threads, the loop's own work (the repository, large bodies, long runs) on the loop."""

    def __init__(
        self,
        service: CounterService,
        repository: Repository,
        settings: Settings,
        version: str,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.service = service
        self.repository = repository
        self.settings = settings
        self.version = version
        self.loop = loop
        self.in_progress = 0
        self._count = threading.Lock()  # in_progress, from every handler thread
        # While calls share runs, a run waits this long for company (app.grpc.threads; on the
        # loop, app.runtime.batcher): COUNTER_GRPC_BATCH_WINDOW_MS.
        self.gather = settings.grpc_batch_window_ms / 1000
        self.runs = Runs(service, self.gather)
        service.thread_calls = self.runs.busy  # an unload waits for these calls too

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        # name: (message, on a handler thread, on the loop); a large body goes to the loop
        calls: dict[str, tuple[type[Message], Sync | None, OnLoop | None]] = {
            "ServerLive": (pb.ServerLiveRequest, self.server_live, None),
            "ServerReady": (pb.ServerReadyRequest, self.server_ready, None),
            "ModelReady": (pb.ModelReadyRequest, self.model_ready, None),
            "ServerMetadata": (pb.ServerMetadataRequest, self.server_metadata, None),
            "ModelMetadata": (pb.ModelMetadataRequest, self.model_metadata, None),
            "ModelInfer": (pb.ModelInferRequest, self.model_infer, self.model_infer_on_loop),
            "ModelConfig": (config_pb.ModelConfigRequest, self.model_config, None),
            "RepositoryIndex": (repo_pb.RepositoryIndexRequest, None, self.repository_index),
            "RepositoryModelLoad": (
                repo_pb.RepositoryModelLoadRequest,
                None,
                self.repository_load,
            ),
            "RepositoryModelUnload": (
                repo_pb.RepositoryModelUnloadRequest,
                None,
                self.repository_unload,
            ),
        }
        return {
            name: grpc.unary_unary_rpc_method_handler(
                tracing.traced_call(name, self._guarded(kind, in_thread, on_loop))
            )
            for name, (kind, in_thread, on_loop) in calls.items()
        }

    def _guarded(
        self, kind: type[Message], in_thread: Sync | None, on_loop: OnLoop | None
    ) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        """The call with the caps, its bytes parsed here, and every refusal as a status."""

        def call(raw: bytes, context: grpc.ServicerContext) -> bytes:
            try:
                return self._answer(kind, in_thread, on_loop, raw, context)
            except ServiceError as exc:
                ERRORS.labels(exc.kind.label).inc()
                code, details = STATUS[exc.kind], exc.message
            except Exception:
                log.exception("gRPC %s failed", kind.DESCRIPTOR.name)
                ERRORS.labels(Kind.INTERNAL.label).inc()
                code, details = Code.INTERNAL, "the service failed on this call; it is logged"
            context.abort(code, details)  # raises: the call ends with this status
            raise AssertionError("grpc's abort returned")  # never reached

        return call

    def _answer(
        self,
        kind: type[Message],
        in_thread: Sync | None,
        on_loop: OnLoop | None,
        raw: bytes,
        context: grpc.ServicerContext,
    ) -> bytes:
        cap = self.settings.grpc_max_message_bytes
        if len(raw) > cap:
            raise ServiceError(
                Kind.BODY_TOO_LARGE,
                f"the request message is {len(raw)} bytes, more than the limit of "
                f"{cap} (COUNTER_GRPC_MAX_MESSAGE_BYTES)",
            )
        limit = self.settings.grpc_max_calls
        with self._count:
            if self.in_progress >= limit:
                raise ServiceError(
                    Kind.OVERLOADED,
                    f"the service is busy: {self.in_progress} gRPC calls are in progress, "
                    f"the limit is {limit} (COUNTER_GRPC_MAX_CALLS); retry shortly",
                )
            self.in_progress += 1
        try:
            try:
                message = kind.FromString(raw)
            except (DecodeError, RecursionError) as exc:
                raise ServiceError(
                    Kind.INVALID_REQUEST,
                    f"the request is not a valid {kind.DESCRIPTOR.full_name} message ({exc})",
                ) from None
            if in_thread is not None and len(raw) <= LARGE_BODY:  # admission holds nothing
                reply = in_thread(message, context)
            else:
                handler = on_loop or _on_loop(in_thread)
                reply = self.on_loop(self._admitted(len(raw), handler, message, context), context)
            return reply if isinstance(reply, bytes) else reply.SerializeToString()
        finally:
            with self._count:
                self.in_progress -= 1

    async def _admitted(
        self, length: int, handler: OnLoop, message: Any, context: grpc.ServicerContext
    ) -> Message | bytes:
        async with self.service.admitted(length):
            return await handler(message, context)

    def on_loop(self, work: Coroutine[Any, Any, T], context: grpc.ServicerContext) -> T:
        """work's result, run on the service's event loop; stopped if the call ends first
        (the client went away, or its deadline passed)."""
        future = asyncio.run_coroutine_threadsafe(work, self.loop)
        context.add_callback(future.cancel)  # once the call has ended: nothing to cancel then
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise ServiceError(
                Kind.CLIENT_DISCONNECTED, "the call ended before its answer; its work stopped"
            ) from None

    def server_live(self, _: Any, __: grpc.ServicerContext) -> Message:
        return pb.ServerLiveResponse(live=True)

    def server_ready(self, _: Any, __: grpc.ServicerContext) -> Message:
        return pb.ServerReadyResponse(ready=self.service.ready)

    def model_ready(self, request: Any, _: grpc.ServicerContext) -> Message:
        model = find_model(self.service, request.name, request.version or None)
        return pb.ModelReadyResponse(ready=model is not None)

    def server_metadata(self, _: Any, __: grpc.ServicerContext) -> Message:
        return pb.ServerMetadataResponse(name=SERVER, version=self.version, extensions=EXTENSIONS)

    def model_metadata(self, request: Any, _: grpc.ServicerContext) -> Message:
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

    def model_config(self, request: Any, _: grpc.ServicerContext) -> Message:
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

    def model_infer(self, request: Any, context: grpc.ServicerContext) -> bytes:
        """On the handler thread, a run of at most INLINE_STEPS too (shared with the calls
        queued meanwhile: app.grpc.threads); a longer one on the loop (model_infer_on_loop).
        In progress from the model found to the answer written, for an unload to wait for."""
        version = request.model_version or None
        find = partial(find_model, self.service, request.model_name, version)
        with self.runs.call(find) as model:
            inference = _parsed(self.service, request)
            if inference.digits is not None:
                if inference.digits.size > INLINE_STEPS:
                    return self.on_loop(self._infer(model, inference, request, context), context)
                probs = self.runs.of(model).digits.run(inference.digits)
                outputs = [OutputTensor("probabilities", "FP32", list(probs.shape), probs)]
            else:
                numbers = inference.numbers
                if len(numbers) * (max(map(len, numbers)) + 1) > INLINE_STEPS:
                    return self.on_loop(self._infer(model, inference, request, context), context)
                answers, probs = self.runs.of(model).numbers.run(numbers)
                outputs = inference.number_outputs(answers, probs)
            return _written(model, request.id, outputs)

    async def model_infer_on_loop(self, request: Any, context: grpc.ServicerContext) -> bytes:
        """A call with a large body: parsed and run on the loop, under its admission."""
        model = find_model(self.service, request.model_name, request.model_version or None)
        return await self._infer(model, _parsed(self.service, request), request, context)

    async def _infer(
        self,
        model: LoadedModel,
        inference: Inference,
        request: Any,
        context: grpc.ServicerContext,
    ) -> bytes:
        """The run on the loop (a worker thread's, for a long one), stopped at the deadline."""
        stop = asyncio.Event()
        remaining = context.time_remaining()
        timer = None
        if remaining is not None:  # the client's deadline: stop a run still going then
            timer = asyncio.get_running_loop().call_later(max(0.0, remaining), stop.set)
        try:
            version = request.model_version or None
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
        return _written(model, request.id, outputs)

    async def repository_index(self, request: Any, _: grpc.ServicerContext) -> Message:
        index = repo_pb.RepositoryIndexResponse.ModelIndex
        return repo_pb.RepositoryIndexResponse(
            models=[
                index(name=e.name, version=e.version, state=e.state, reason=e.reason)
                for e in self.repository.index()
                if not request.ready or e.state == "READY"
            ]
        )

    def _operator(self, context: grpc.ServicerContext) -> None:
        """The bearer token in the call's metadata, as REST's Authorization header."""
        header = dict(context.invocation_metadata() or ()).get("authorization")
        authorize(header, self.settings)

    async def repository_load(self, request: Any, context: grpc.ServicerContext) -> Message:
        self._operator(context)
        await self.repository.load(request.model_name)
        return repo_pb.RepositoryModelLoadResponse()

    async def repository_unload(self, request: Any, context: grpc.ServicerContext) -> Message:
        self._operator(context)
        await self.repository.unload(request.model_name)
        return repo_pb.RepositoryModelUnloadResponse()


def _parsed(service: CounterService, request: Any) -> Inference:
    """The request checked as REST checks it (app.grpc.tensors, app.api.inference)."""
    if tracing.TRACER is None:  # off: the plain calls, not even a do-nothing `with`
        return Inference(service, tensors.read_request(request))
    with tracing.span("parse"):
        return Inference(service, tensors.read_request(request))


def _written(model: LoadedModel, request_id: str, outputs: list[OutputTensor]) -> bytes:
    card = model.card
    if tracing.TRACER is None:
        return tensors.write_response(card.name, card.version, request_id or None, outputs)
    with tracing.span("answer"):
        return tensors.write_response(card.name, card.version, request_id or None, outputs)


def _on_loop(handler: Sync | None) -> OnLoop:
    """A thread's handler, run on the loop instead (a large body's, under its admission)."""
    assert handler is not None

    async def call(message: Any, context: grpc.ServicerContext) -> Message | bytes:
        return handler(message, context)

    return call
