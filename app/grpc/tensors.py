"""Open Inference Protocol tensors over gRPC: ModelInferRequest in, ModelInferResponse out.

An input's data comes either in its typed `contents` (int64_contents, bytes_contents) or, for
every input at once, in `raw_input_contents` (little-endian, row-major; a BYTES element is a
4-byte little-endian length and its bytes, as in the REST binary extension). Outputs always go
back in `raw_output_contents`, as Triton answers: tritonclient and KServe's client read both.
Every malformed tensor is a ServiceError (INVALID_ARGUMENT) that says what was wrong.
The response is written on the wire by field number: its few top-level fields by hand, each
output's description by protobuf once per name, type and shape (cached); building the
message through protobuf's Python API cost more than the model run of a batched call.
"""

import struct
from functools import lru_cache
from typing import Any

import numpy as np

from app.api.tensors import (
    InferInput,
    InferRequest,
    OutputTensor,
    element_count,
    from_binary,
    tensor_bytes,
)
from app.errors import Kind, ServiceError, preview
from app.grpc.v2 import grpc_predict_v2_pb2 as pb


def _bad(message: str) -> ServiceError:
    return ServiceError(Kind.MALFORMED_TENSOR, message)


def _from_contents(name: str, datatype: str, contents: Any, count: int) -> Any:
    if datatype == "INT64":
        values: Any = contents.int64_contents
    elif datatype == "BYTES":
        values = contents.bytes_contents
    else:
        raise _bad(f"input {name!r}: datatype {preview(datatype, 12)} is not read by this service")
    if len(values) != count:
        raise _bad(f"input {name!r}: its shape holds {count} elements, its contents {len(values)}")
    if datatype == "INT64":
        return np.asarray(values, dtype=np.int64)
    return list(values)


def read_request(message: pb.ModelInferRequest) -> InferRequest:
    """The request's inputs and the outputs it asks for, checked as the REST parser checks."""
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise _bad(
            f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs; "
            "send one per input, in the order of inputs"
        )
    inputs = []
    for index, tensor in enumerate(message.inputs):
        name = tensor.name[:40]  # echoed in errors: cut short
        shape = list(tensor.shape)
        if any(dim < 0 for dim in shape):
            raise _bad(f"input {name!r}: shape must be whole numbers >= 0, got {shape[:8]}")
        count = element_count(shape)
        if raw:
            if tensor.HasField("contents"):
                raise _bad(f"input {name!r}: send contents or raw_input_contents, not both")
            values = from_binary(name, tensor.datatype, raw[index], count)
        else:
            values = _from_contents(name, tensor.datatype, tensor.contents, count)
        inputs.append(InferInput(tensor.name, tensor.datatype, shape, values))
    outputs = [output.name for output in message.outputs] if message.outputs else None
    return InferRequest(id=message.id or None, inputs=inputs, outputs=outputs)


def _varint(value: int) -> bytes:
    """A base-128 varint of a length (>= 0)."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): a string, bytes or a sub-message."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


# ModelInferResponse's field numbers (grpc_predict_v2.proto)
_MODEL_NAME, _MODEL_VERSION, _ID, _OUTPUTS, _RAW_OUTPUT_CONTENTS = 1, 2, 3, 5, 6


@lru_cache(maxsize=4096)
def _output_field(name: str, datatype: str, shape: tuple[int, ...]) -> bytes:
    """An `outputs` entry (InferOutputTensor), encoded by protobuf."""
    tensor = pb.ModelInferResponse.InferOutputTensor(name=name, datatype=datatype, shape=shape)
    return _field(_OUTPUTS, tensor.SerializeToString())


def _raw(tensor: OutputTensor) -> bytes:
    """An output's raw contents: the counter's per-number columns (plain lists) packed here,
    where numpy's array round trip cost several times more; arrays as tensor_bytes writes."""
    values = tensor.values
    if isinstance(values, list):
        if tensor.datatype == "BOOL":
            return bytes(1 if value else 0 for value in values)
        if tensor.datatype == "INT64":
            return struct.pack(f"<{len(values)}q", *values)
    return tensor_bytes(tensor)


def write_response(
    model: str, version: str, request_id: str | None, outputs: list[OutputTensor]
) -> bytes:
    """The serialized ModelInferResponse, every output's data in raw_output_contents."""
    parts = [_field(_MODEL_NAME, model.encode()), _field(_MODEL_VERSION, version.encode())]
    if request_id:
        parts.append(_field(_ID, request_id.encode()))
    parts += [_output_field(t.name, t.datatype, tuple(t.shape)) for t in outputs]
    parts += [_field(_RAW_OUTPUT_CONTENTS, _raw(t)) for t in outputs]
    return b"".join(parts)
