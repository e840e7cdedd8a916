"""Reading a V2 inference request (app.api.tensors holds what it reads into), and the request's
schema as read, for /docs.

An inference request is a JSON object, optionally followed by raw tensor bytes: the header
Inference-Header-Content-Length says how long the JSON part is, and each input whose data is
binary says its byte size in parameters.binary_data_size (tritonclient sends no Content-Type).
Every malformed tensor is a ServiceError (400) that says what was wrong.
"""

from typing import Any

import numpy as np
import orjson

from app import process
from app.api.tensors import InferInput, InferRequest, from_binary
from app.errors import Kind, ServiceError, preview

MAX_RANK = 8  # dimensions a shape may have (the inputs here have 1 or 2)
_NESTED = (list, dict)  # what may not stand where a tensor element is


def _bad(message: str) -> ServiceError:
    return ServiceError(Kind.MALFORMED_TENSOR, message)


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
