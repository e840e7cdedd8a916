"""What grpc itself costs a Python server per V2 call: the floor under any gRPC server's figures.

A server that answers ModelInfer with bytes made once (no parsing, no model, no answer) is
driven by Triton's perf_analyzer exactly as bench.peers drives ours and MLServer (the server
pinned to core 0, perf_analyzer to core 1, the counter's `number` request, every output asked
for); its CPU time per request is then grpc's own per-call work, which every Python server on
grpc pays before its own. Measured for grpc.aio (MLServer serves on it, and ours did), then for
grpc's synchronous server (a thread pool; ours serves on it: app.grpc.server), --rounds runs
each. Last, ours' own work per call in one thread, as a batch of `--connections` calls does it
on the handler threads (parse, one shared model run, outputs, response bytes): the floor plus
this is the least ours can cost per request, with no thread hand-off counted.

    python -m bench.grpc_floor [--rounds 2] [--connections 16] [--duration 5]
"""

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from concurrent import futures
from types import SimpleNamespace

import grpc
from grpc import aio

from app.api.inference import NUMBER_OUTPUTS, Inference
from app.grpc.server import SERVICE_NAME
from app.grpc.tensors import read_request, write_response
from app.grpc.v2 import grpc_predict_v2_pb2 as pb
from app.grpc.v2 import model_config_pb2 as config_pb
from app.runtime.engine import EngineOptions, answer_with_probabilities
from app.runtime.registry import load_model
from app.settings import DEFAULT_MODELS_DIR, Settings
from bench.http import free_port
from bench.peer_servers import NUMBER, REPO, Server
from bench.perf_analyzer import find_perf_analyzer, perf_analyzer

SYNC_THREADS = 16
OUTPUTS = {"output": "BYTES", "carry_run": "INT64", "proved": "BOOL", "correct": "BOOL"}
TRITON_TYPES = {"BYTES": "TYPE_STRING", "INT64": "TYPE_INT64", "BOOL": "TYPE_BOOL"}


def _answers() -> dict[str, bytes]:
    """Each call's answer, serialized once: what perf_analyzer asks before it measures, and a
    ModelInfer answer of the counter's shape for one number (six outputs, probabilities too)."""
    tensor = pb.ModelMetadataResponse.TensorMetadata
    metadata = pb.ModelMetadataResponse(
        name="counter",
        versions=["1"],
        platform="onnxruntime_onnx",
        inputs=[tensor(name="number", datatype="BYTES", shape=[-1])],
        outputs=[tensor(name=name, datatype=kind, shape=[-1]) for name, kind in OUTPUTS.items()]
        + [tensor(name="probabilities", datatype="FP32", shape=[-1, -1, 10])],
    )
    config = config_pb.ModelConfig(
        name="counter",
        platform="onnxruntime_onnx",
        backend="onnxruntime",
        input=[config_pb.ModelInput(name="number", data_type="TYPE_STRING", dims=[-1])],
        output=[
            config_pb.ModelOutput(name=name, data_type=TRITON_TYPES[kind], dims=[-1])
            for name, kind in OUTPUTS.items()
        ]
        + [config_pb.ModelOutput(name="probabilities", data_type="TYPE_FP32", dims=[-1, -1, 10])],
    )
    infer = pb.ModelInferResponse(model_name="counter", model_version="1")
    for name, kind in OUTPUTS.items():
        infer.outputs.add(name=name, datatype=kind, shape=[1])
        infer.raw_output_contents.append(b"\x00" * 8)
    infer.outputs.add(name="probabilities", datatype="FP32", shape=[1, len(NUMBER) + 1, 10])
    infer.raw_output_contents.append(b"\x00" * 4 * 10 * (len(NUMBER) + 1))
    return {
        "ServerLive": pb.ServerLiveResponse(live=True).SerializeToString(),
        "ServerReady": pb.ServerReadyResponse(ready=True).SerializeToString(),
        "ModelReady": pb.ModelReadyResponse(ready=True).SerializeToString(),
        "ServerMetadata": pb.ServerMetadataResponse(name="floor", version="1").SerializeToString(),
        "ModelMetadata": metadata.SerializeToString(),
        "ModelConfig": config_pb.ModelConfigResponse(config=config).SerializeToString(),
        "ModelInfer": infer.SerializeToString(),
    }


def serve(kind: str, port: int) -> None:
    """Answer every call with its bytes until killed."""
    address = f"127.0.0.1:{port}"
    if kind == "aio":

        def handler_aio(reply: bytes) -> grpc.RpcMethodHandler:
            async def call(_: bytes, __: aio.ServicerContext) -> bytes:
                return reply

            return grpc.unary_unary_rpc_method_handler(call)

        async def run() -> None:
            server = aio.server()
            handlers = {name: handler_aio(reply) for name, reply in _answers().items()}
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),)
            )
            server.add_insecure_port(address)
            await server.start()
            await server.wait_for_termination()

        asyncio.run(run())
        return

    def handler_sync(reply: bytes) -> grpc.RpcMethodHandler:
        def call(_: bytes, __: grpc.ServicerContext) -> bytes:
            return reply

        return grpc.unary_unary_rpc_method_handler(call)

    server = grpc.server(futures.ThreadPoolExecutor(SYNC_THREADS))
    handlers = {name: handler_sync(reply) for name, reply in _answers().items()}
    server.add_registered_method_handlers(SERVICE_NAME, handlers)  # as app.grpc.server
    server.add_insecure_port(address)
    server.start()
    server.wait_for_termination()


def ours_work_us(calls: int, repeat: int = 300) -> dict[str, float]:
    """Microseconds per call of each part of ours' ModelInfer (app.grpc.calls.model_infer),
    in one thread, `calls` calls sharing one model run; medians of `repeat` batches."""
    request = pb.ModelInferRequest(model_name="counter")
    tensor = request.inputs.add(name="number", datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(NUMBER.encode())
    for name in NUMBER_OUTPUTS:  # as perf_analyzer asks: every output declared
        request.outputs.add(name=name)
    raw = request.SerializeToString()
    settings = Settings()
    service = SimpleNamespace(settings=settings)  # Inference reads only its settings
    model = load_model(DEFAULT_MODELS_DIR / "counter.json", settings.max_model_bytes)
    options = EngineOptions(settings.low_confidence, settings.summary_steps, settings.echo_digits)
    parts: dict[str, list[float]] = {"parse": [], "run": [], "outputs": [], "write": []}
    for _ in range(repeat):
        began = time.perf_counter()
        inferences = [
            Inference(service, read_request(pb.ModelInferRequest.FromString(raw)))  # type: ignore[arg-type]
            for _ in range(calls)
        ]
        parsed = time.perf_counter()
        answers, probs = answer_with_probabilities(
            model, [(i.numbers, "none") for i in inferences], options
        )
        ran = time.perf_counter()
        outputs = [
            i.number_outputs(a, probs[n : n + 1])
            for n, (i, a) in enumerate(zip(inferences, answers, strict=True))
        ]
        made = time.perf_counter()
        for each in outputs:
            write_response("counter", "1", None, each)
        written = time.perf_counter()
        for part, (start, end) in zip(
            parts, [(began, parsed), (parsed, ran), (ran, made), (made, written)], strict=True
        ):
            parts[part].append((end - start) / calls * 1e6)
    return {part: statistics.median(times) for part, times in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=int, default=5, help="perf_analyzer window x 2, s")
    parser.add_argument("--serve", choices=["aio", "sync"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    tool = find_perf_analyzer(REPO / ".bench")
    work = REPO / ".bench" / "logs" / "grpc_floor"
    work.mkdir(parents=True, exist_ok=True)
    cpu: dict[str, list[float]] = {"aio": [], "sync": []}
    rps: dict[str, list[float]] = {"aio": [], "sync": []}
    for kind in cpu:
        port = free_port()
        argv = [sys.executable, "-m", "bench.grpc_floor", "--serve", kind, "--port", str(port)]
        server = Server("ours", kind, argv, {}, 0, work, grpc_port=port)
        server.process = subprocess.Popen(["taskset", "-c", "0", *argv], cwd=REPO)
        time.sleep(2)  # listening (perf_analyzer retries nothing: give it time)
        try:
            for round_ in range(args.rounds):
                run = perf_analyzer(
                    tool, 1, server, "grpc", args.duration, args.connections, work, 30
                )
                cpu[kind].append(run.cpu_us)
                rps[kind].append(run.rps)
                print(f"{kind} round {round_ + 1}: {run.rps:.0f} infer/s, {run.cpu_us:.0f} us")
        finally:
            server.process.terminate()
            server.process.wait()
    print(
        f"\n`python -m bench.grpc_floor --rounds {args.rounds} --connections "
        f"{args.connections} --duration {args.duration}`: canned ModelInfer answers, "
        "medians (min-max)\n"
    )
    print("| server | infer/s | CPU us per request |\n| --- | --- | --- |")
    for kind in cpu:
        print(
            f"| grpc {'aio' if kind == 'aio' else 'sync, ' + str(SYNC_THREADS) + ' threads'} | "
            f"{statistics.median(rps[kind]):.0f} ({min(rps[kind]):.0f}-{max(rps[kind]):.0f}) | "
            f"{statistics.median(cpu[kind]):.0f} ({min(cpu[kind]):.0f}-{max(cpu[kind]):.0f}) |"
        )
    own = ours_work_us(args.connections)
    figures = ", ".join(f"{part} {us:.1f}" for part, us in own.items())
    print(
        f"\nours' own work per call, one thread, {args.connections} calls to a model run: "
        f"{figures}; {sum(own.values()):.1f} µs in all"
    )


if __name__ == "__main__":
    main()
