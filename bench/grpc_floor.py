"""What grpc itself costs a Python server per V2 call: the floor under any gRPC server's figures.

A server that answers ModelInfer with bytes made once (no parsing, no model, no answer) is
driven by Triton's perf_analyzer exactly as bench.peers drives ours and MLServer (the server
pinned to core 0, perf_analyzer to core 1, the counter's `number` request, every output asked
for); its CPU time per request is then grpc's own per-call work, which every Python server on
grpc pays before its own. Measured for grpc.aio (MLServer serves on it, and ours did), then for
grpc's synchronous server (a thread pool; ours serves on it: app.grpc.server), --rounds runs
each.

    python -m bench.grpc_floor [--rounds 2] [--connections 16] [--duration 5]
"""

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from concurrent import futures

import grpc
from grpc import aio

from app.grpc.server import SERVICE_NAME
from app.grpc.v2 import grpc_predict_v2_pb2 as pb
from app.grpc.v2 import model_config_pb2 as config_pb
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
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_insecure_port(address)
    server.start()
    server.wait_for_termination()


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


if __name__ == "__main__":
    main()
