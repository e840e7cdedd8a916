"""`mlserver start FOLDER` for bench/peers.py, with the one gRPC call perf_analyzer asks first
that MLServer lacks: Triton's ModelConfig (inference.GRPCInferenceService/ModelConfig), answered
with the minimal configuration mlserver_runtime.CounterRuntime also gives over REST (GET
/v2/models/counter/config). It is added beside MLServer's own handlers when its gRPC server is
built; no call MLServer serves changes, and perf_analyzer asks it once, before any inference.

    .bench/mlserver/bin/python bench/peers/mlserver_start.py start FOLDER
"""

import sys
from typing import Any

import grpc
from mlserver.cli.main import main
from mlserver.grpc import server

# Triton's DataType numbers (model_config.proto)
TYPE_INT64, TYPE_FP32 = 9, 11


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _tensor(name: str, datatype: int, dims: list[int], dims_field: int) -> bytes:
    packed = b"".join(_varint(d) for d in dims)
    return (
        _field(1, name.encode()) + _varint(2 << 3) + _varint(datatype) + _field(dims_field, packed)
    )


# ModelConfigResponse{config: ModelConfig{name, platform, backend, max_batch_size 0 (unset),
# input: ModelInput{name, data_type, dims (4)}, output: ModelOutput{name, data_type, dims (3)}}}
CONFIG = _field(
    1,
    _field(1, b"counter")
    + _field(2, b"onnxruntime_onnx")
    + _field(17, b"onnxruntime")
    + _field(5, _tensor("digits", TYPE_INT64, [-1, -1], 4))
    + _field(6, _tensor("probabilities", TYPE_FP32, [-1, -1, 10], 3)),
)


async def model_config(request: bytes, context: Any) -> bytes:
    return CONFIG


_create_server = server.GRPCServer._create_server


def _with_model_config(self: Any) -> None:
    _create_server(self)
    handlers = {
        "ModelConfig": grpc.unary_unary_rpc_method_handler(
            model_config, request_deserializer=None, response_serializer=None
        )
    }
    generic = grpc.method_handlers_generic_handler("inference.GRPCInferenceService", handlers)
    self._server.add_generic_rpc_handlers((generic,))


server.GRPCServer._create_server = _with_model_config

if __name__ == "__main__":
    sys.argv = ["mlserver", *sys.argv[1:]]
    main()
