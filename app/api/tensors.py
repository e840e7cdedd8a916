"""Open Inference Protocol (KServe V2) tensors: the request and output types every protocol
shares (HTTP here, gRPC in app.grpc.tensors), their binary form, and the HTTP response.

Binary tensors (the binary tensor data extension) are little-endian, row-major; a BYTES element
is a 4-byte little-endian length and its bytes. Outputs are written so when asked (binary_data,
or binary_data_output for all), the JSON part's length in Inference-Header-Content-Length.
Reading a request is app.api.infer_request; a model's metadata is app.api.model_metadata.
"""

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

# Re-exported for app.grpc.server, which imports them from here.
from app.api.model_metadata import model_config as model_config
from app.api.model_metadata import model_metadata as model_metadata
from app.errors import Kind, ServiceError, preview

HEADER_LENGTH = "inference-header-content-length"
SERVER = "rnn-counter"
# datatype -> numpy dtype for the fixed-size types this service reads or writes
DTYPES: dict[str, Any] = {"INT64": np.int64, "FP32": np.float32, "BOOL": np.bool_}


def _bad(message: str) -> ServiceError:
    return ServiceError(Kind.MALFORMED_TENSOR, message)


@dataclass
class InferInput:
    """One input tensor as sent: a flat array (numeric) or a list of byte strings (BYTES)."""

    name: str
    datatype: str
    shape: list[int]
    values: Any  # np.ndarray (fixed-size types) or list[bytes] (BYTES)


@dataclass
class InferRequest:
    """A parsed inference request."""

    id: str | None
    inputs: list[InferInput]
    outputs: list[str] | None  # names asked for; None: every output that applies
    binary: dict[str, bool] = field(default_factory=dict)  # output name -> binary wanted
    binary_all: bool = False


def from_binary(name: str, datatype: str, raw: bytes, count: int) -> Any:
    if datatype == "BYTES":
        values, at = [], 0
        while at < len(raw):
            if at + 4 > len(raw):
                raise _bad(f"input {name}: a BYTES element's length is cut short")
            (size,) = struct.unpack_from("<I", raw, at)
            at += 4
            if at + size > len(raw):
                raise _bad(f"input {name}: a BYTES element runs past its binary data")
            values.append(raw[at : at + size])
            at += size
        if len(values) != count:
            raise _bad(f"input {name}: its shape holds {count} elements, its data {len(values)}")
        return values
    if datatype != "INT64":
        raise _bad(f"input {name}: datatype {preview(datatype, 12)} is not read by this service")
    if len(raw) != 8 * count:
        raise _bad(f"input {name}: {count} INT64 elements take {8 * count} bytes, not {len(raw)}")
    return np.frombuffer(raw, dtype="<i8").astype(np.int64)


def element_count(shape: list[int]) -> int:
    """The elements of a shape whose dimensions are already bounded (gRPC's are int64)."""
    count = 1
    for dim in shape:
        count *= dim
    return count


@dataclass
class OutputTensor:
    """One output: its name, datatype, shape and values (numpy array or list of str)."""

    name: str
    datatype: str
    shape: list[int]
    values: Any


def tensor_bytes(tensor: OutputTensor) -> bytes:
    if tensor.datatype == "BYTES":
        parts = []
        for value in tensor.values:
            encoded = value.encode("utf-8")
            parts += [struct.pack("<I", len(encoded)), encoded]
        return b"".join(parts)
    array: npt.NDArray[Any] = np.ascontiguousarray(tensor.values, dtype=DTYPES[tensor.datatype])
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def tensor_view(tensor: OutputTensor) -> bytes | memoryview:
    """tensor_bytes without the copy where the values are an array laid out as the wire's
    (contiguous, little-endian): its memory, lent as it is. A large batch's probabilities
    are most of its answer; the copy, and the body joined around it, were twice them again."""
    values = tensor.values
    if tensor.datatype == "BYTES" or not isinstance(values, np.ndarray):
        return tensor_bytes(tensor)
    array = np.ascontiguousarray(values, dtype=DTYPES[tensor.datatype])
    array = array.astype(array.dtype.newbyteorder("<"), copy=False)
    view: memoryview = array.reshape(-1).view(np.uint8).data  # numpy's stubs: not a Buffer
    return view


def write_response(
    model: str, version: str, request: InferRequest, outputs: list[OutputTensor]
) -> tuple[list[bytes | memoryview], dict[str, str]]:
    """The response body's parts, the JSON then each binary output's data (sent one after the
    other, never joined: app.exchange.reply), and its headers."""
    described: list[dict[str, Any]] = []
    tails: list[bytes | memoryview] = []
    for tensor in outputs:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": tensor.shape,
        }
        if request.binary.get(tensor.name, request.binary_all):
            raw = tensor_view(tensor)
            entry["parameters"] = {"binary_data_size": len(raw)}
            tails.append(raw)
        elif tensor.datatype == "BYTES":
            entry["data"] = list(tensor.values)
        elif isinstance(tensor.values, list):
            entry["data"] = tensor.values  # flat already
        else:
            entry["data"] = np.ravel(tensor.values)
        described.append(entry)
    head: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": described}
    if request.id is not None:
        head["id"] = request.id
    body = orjson.dumps(head, option=orjson.OPT_SERIALIZE_NUMPY)
    if not tails:
        return [body], {"content-type": "application/json"}
    headers = {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(body))}
    return [body, *tails], headers
