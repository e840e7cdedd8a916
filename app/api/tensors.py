"""Open Inference Protocol (KServe V2) tensors: JSON and the binary tensor data extension.

An inference request is a JSON object, optionally followed by raw tensor bytes: the header
Inference-Header-Content-Length says how long the JSON part is, and each input whose data is
binary says its byte size in parameters.binary_data_size (tritonclient sends no Content-Type).
Binary tensors are little-endian, row-major; a BYTES element is a 4-byte little-endian length
and its bytes. Outputs are written the same way when asked (binary_data, or binary_data_output
for all). Every malformed tensor is a ServiceError (400) that says what was wrong.
"""

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from app import process
from app.errors import Kind, ServiceError, preview
from app.runtime.models import LoadedModel

HEADER_LENGTH = "inference-header-content-length"
SERVER = "rnn-counter"
PLATFORM = "onnxruntime_onnx"
# datatype -> numpy dtype for the fixed-size types this service reads or writes
DTYPES: dict[str, Any] = {"INT64": np.int64, "FP32": np.float32, "BOOL": np.bool_}
MAX_RANK = 8  # dimensions a shape may have (the inputs here have 1 or 2)
_NESTED = (list, dict)  # what may not stand where a tensor element is


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


def _object(value: Any, what: str) -> dict[str, Any]:
    """A `parameters` object: absent or null is empty; anything but an object is refused."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(f'{what} parameters must be an object, like {{"binary_data_size": 16}}')
    return value


def _shape(value: Any, name: str, most: int) -> tuple[list[int], int]:
    """The shape and its element count, each dimension bounded before any arithmetic: no shape
    holds more elements than the body could carry (`most`), whatever its digits."""
    if not isinstance(value, list) or len(value) > MAX_RANK:
        raise _bad(f"input {name}: shape must be a list of at most {MAX_RANK} whole numbers >= 0")
    count = 1
    for dim in value:
        if type(dim) is not int or dim < 0:
            raise _bad(f"input {name}: shape must be a list of whole numbers >= 0")
        count = most + 1 if dim > most else min(count * dim, most + 1)
    if 0 in value:
        count = 0
    if count > most:
        raise _bad(
            f"input {name}: shape {preview(str(value), 40)} holds more elements than a body "
            f"of {most} bytes can carry"
        )
    return value, count


def _flatten(data: Any, shape: list[int], name: str) -> list[Any]:
    """Row-major data as one flat list: already flat, or nested exactly as its shape says (no
    deeper, no ragged rows). Walked level by level: no recursion, whatever the nesting."""
    if not isinstance(data, list):
        raise _bad(f"input {name}: data must be an array, flat or nested as its shape says")
    if not any(isinstance(item, _NESTED) for item in data):
        return data
    level: list[Any] = [data]
    for depth, dim in enumerate(shape):
        inner: list[Any] = []
        for item in level:
            if not isinstance(item, list) or len(item) != dim:
                raise _bad(
                    f"input {name}: data nested at depth {depth} does not match shape {shape}: "
                    "send it flat, or nested exactly as the shape says"
                )
            inner.extend(item)
        level = inner
    if any(isinstance(item, _NESTED) for item in level):
        raise _bad(f"input {name}: data is nested deeper than its shape {shape}")
    return level


def _from_json(name: str, datatype: str, data: Any, shape: list[int], count: int) -> Any:
    values = _flatten(data, shape, name)
    if len(values) != count:
        raise _bad(f"input {name}: its shape holds {count} elements, its data has {len(values)}")
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in values):
            raise _bad(f"input {name}: BYTES data in JSON must be strings")
        return [v.encode("utf-8") for v in values]  # orjson's strings: never a lone surrogate
    if datatype == "INT64":
        if not all(type(v) is int for v in values):
            raise _bad(f"input {name}: INT64 data must be whole numbers")
        try:
            return np.asarray(values, dtype=np.int64)
        except OverflowError:
            raise _bad(f"input {name}: a value does not fit in INT64") from None
    raise _bad(f"input {name}: datatype {preview(datatype, 12)} is not read by this service")


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


def _json_length(header_length: str, body: bytes) -> int:
    """Inference-Header-Content-Length, read as ASCII digits only (str.isdigit also takes
    '²', which int() refuses)."""
    if header_length.isascii() and header_length.isdigit() and len(header_length) < 19:
        length = int(header_length)
        if length <= len(body):
            return length
    raise _bad(
        f"Inference-Header-Content-Length is {preview(header_length, 12)}, but the body has "
        f"{len(body)} bytes: send the JSON part's length in ASCII digits"
    )


GC_FREE_BYTES = 64 * 1024  # a JSON part up to this size is parsed with the collector on


def _not_json(exc: orjson.JSONDecodeError) -> ServiceError:
    return ServiceError(
        Kind.MALFORMED_JSON,
        f"the inference request is not valid JSON ({exc.msg} at line {exc.lineno} column "
        f"{exc.colno})",
    )


def _load(json_part: bytes) -> Any:
    """The JSON part, by orjson alone: what it refuses (a lone surrogate, a number past a
    double, NaN, nesting past 1024) no input of this protocol needs. The collector is held off
    while it builds the objects: a body of a million small arrays otherwise runs it over and
    over, for seconds (docs/benchmarks.md, "Figures behind the code's choices")."""
    if len(json_part) <= GC_FREE_BYTES:
        try:
            return orjson.loads(json_part)
        except orjson.JSONDecodeError as exc:
            raise _not_json(exc) from None
    with process.collector_held():
        try:
            return orjson.loads(json_part)
        except orjson.JSONDecodeError as exc:
            raise _not_json(exc) from None


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """Split and read an inference request (JSON, or JSON + binary tensors)."""
    if header_length is None:
        json_part, binary = body, b""
    else:
        length = _json_length(header_length, body)
        json_part, binary = body[:length], body[length:]
    data = _load(json_part)
    if not isinstance(data, dict) or not isinstance(data.get("inputs"), list):
        raise _bad('an inference request is an object with an "inputs" array')
    request_id = data.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _bad("the request id must be a string")
    parameters = _object(data.get("parameters"), "the request's")
    most = max(len(body), 1)  # no shape may hold more elements than the body has bytes
    inputs, at = [], 0
    for item in data["inputs"]:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise _bad("every input is an object with a name, a shape, a datatype and data")
        name = preview(item["name"], 20)
        datatype = item.get("datatype")
        if not isinstance(datatype, str):
            raise _bad(f"input {name}: datatype must be a string such as INT64")
        shape, count = _shape(item.get("shape"), name, most)
        size = _object(item.get("parameters"), f"input {name}:").get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0 or at + size > len(binary):
                raise _bad(f"input {name}: binary_data_size runs past the body")
            values = from_binary(name, datatype, binary[at : at + size], count)
            at += size
        elif "data" in item:
            values = _from_json(name, datatype, item["data"], shape, count)
        else:
            raise _bad(f"input {name}: no data and no binary_data_size")
        inputs.append(InferInput(item["name"], datatype, shape, values))
    if at != len(binary):
        raise _bad(f"{len(binary) - at} bytes of binary data belong to no input")
    request = InferRequest(
        id=request_id,
        inputs=inputs,
        outputs=None,
        binary_all=parameters.get("binary_data_output") is True,
    )
    outputs = data.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list):
            raise _bad('"outputs" must be an array of objects with a name')
        request.outputs = []
        for item in outputs:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise _bad("every requested output is an object with a name")
            request.outputs.append(item["name"])
            where = f"output {preview(item['name'], 20)}:"
            wants = _object(item.get("parameters"), where).get("binary_data")
            if wants is not None:
                request.binary[item["name"]] = wants is True
    return request


V2_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
_V2_PARAMETERS = {"type": ["object", "null"], "description": "binary_data_size, binary_data"}


def request_schema() -> dict[str, Any]:
    """The inference request as parse_request reads it (the protocol's $inference_request):
    anything outside it is refused with 400."""
    scalar = {"type": ["number", "string", "boolean"]}
    return {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": ["string", "null"], "description": "echoed in the answer"},
            "parameters": {
                **_V2_PARAMETERS,
                "description": "binary_data_output: true asks every output as binary data",
            },
            "inputs": {
                "type": "array",
                "minItems": 1,
                "description": "exactly one: 'digits' (INT64 [batch, time]) or 'number' "
                "(BYTES [batch])",
                "items": {
                    "type": "object",
                    "required": ["name", "shape", "datatype"],
                    "properties": {
                        "name": {"type": "string", "enum": ["digits", "number"]},
                        "shape": {
                            "type": "array",
                            "maxItems": MAX_RANK,
                            "items": {"type": "integer", "minimum": 0},
                        },
                        "datatype": {"type": "string", "enum": ["INT64", "BYTES"]},
                        "parameters": _V2_PARAMETERS,
                        "data": {
                            "type": "array",
                            "description": "row-major: flat, or nested exactly as the shape "
                            "says; absent when parameters.binary_data_size says where its "
                            "binary data is",
                            "items": {"anyOf": [scalar, {"type": "array"}]},
                        },
                    },
                },
            },
            "outputs": {
                "type": ["array", "null"],
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "parameters": _V2_PARAMETERS},
                },
            },
        },
    }


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


# Triton's model configuration names for the datatypes above (BYTES is TYPE_STRING there).
TRITON_TYPES = {
    "BYTES": "TYPE_STRING",
    "INT64": "TYPE_INT64",
    "FP32": "TYPE_FP32",
    "BOOL": "TYPE_BOOL",
}


def model_config(model: LoadedModel) -> dict[str, Any]:
    """A minimal Triton model configuration (GET /v2/models/{name}/config, gRPC ModelConfig),
    as Triton's perf_analyzer reads it before any inference: both inputs, each optional (a
    request sends exactly one), so that perf_analyzer sends the one it is given data for."""
    described = model_metadata(model)

    def entry(tensor: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": tensor["name"],
            "data_type": TRITON_TYPES[tensor["datatype"]],
            "dims": tensor["shape"],
        }

    return {
        "name": model.card.name,
        "platform": PLATFORM,
        "backend": "onnxruntime",
        "max_batch_size": 0,
        "input": [{**entry(t), "optional": True} for t in described["inputs"]],
        "output": [entry(t) for t in described["outputs"]],
    }


def _metadata_tensor(name: str, datatype: str, shape: list[int]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape}


def model_metadata(model: LoadedModel, versions: list[str] | None = None) -> dict[str, Any]:
    """Inputs (either one per request) and outputs of a model, -1 for a dynamic dimension;
    versions: those served (default: the model's own)."""
    return {
        "name": model.card.name,
        "versions": versions or [model.card.version],
        "platform": PLATFORM,
        "inputs": [
            _metadata_tensor("digits", "INT64", [-1, -1]),
            _metadata_tensor("number", "BYTES", [-1]),
        ],
        "outputs": [
            _metadata_tensor("probabilities", "FP32", [-1, -1, 10]),
            _metadata_tensor("output", "BYTES", [-1]),
            _metadata_tensor("carry_run", "INT64", [-1]),
            _metadata_tensor("beyond_reliable_carry", "BOOL", [-1]),
            _metadata_tensor("proved", "BOOL", [-1]),
            _metadata_tensor("correct", "BOOL", [-1]),
        ],
        "parameters": _proof_parameters(model),
    }


def _proof_parameters(model: LoadedModel) -> dict[str, Any]:
    """What the service proved of the model at load (the v2 protocol's free-form parameters):
    the reliable carry length it serves and, when the card has one, the decision's check."""
    check = model.check
    found: dict[str, Any] = {"reliable_carry_length": model.card.metrics.reliable_carry_length}
    if check.decision is not None:
        found["decision_check"] = check.decision.result
        found["decision_check_seconds"] = check.decision.seconds
        found["decided_carry_length"] = check.decision.proved_carry_length
        found["refutation"] = check.decision.refutation
        if check.decision.reason is not None:
            found["decision_check_reason"] = check.decision.reason
    return found
