"""A schema-checked read of an ONNX file's protobuf wire format, for the graph check
(core.canonical): every field the exporter never writes is refused, and so is a field that may
appear once appearing twice, since protobuf merges such repeats and a reader taking the last
would see another graph than onnxruntime. The `onnx` package is not installed in the service.
"""

from typing import Any

import numpy as np

from core.onnx_reader import _fields, _signed, _varint


class NotCanonicalError(ValueError):
    """The file is not the graph the exporter writes: one line saying where it differs."""


# Wire kinds: "int" varint, "str" UTF-8, "bytes", "ints"/"floats" packed or not, or a message.
# Each message lists the fields the exporter writes, as (name, kind, repeated); REFUSED names
# the fields it never writes, so that a refusal says what the file has.
_SCHEMA: dict[str, dict[int, tuple[str, str, bool]]] = {
    "ModelProto": {
        1: ("ir_version", "int", False),
        2: ("producer_name", "str", False),
        3: ("producer_version", "str", False),
        7: ("graph", "GraphProto", False),
        8: ("opset_import", "OperatorSetIdProto", True),
    },
    "OperatorSetIdProto": {1: ("domain", "str", False), 2: ("version", "int", False)},
    "GraphProto": {
        1: ("node", "NodeProto", True),
        2: ("name", "str", False),
        5: ("initializer", "TensorProto", True),
        11: ("input", "ValueInfoProto", True),
        12: ("output", "ValueInfoProto", True),
    },
    "NodeProto": {
        1: ("input", "str", True),
        2: ("output", "str", True),
        3: ("name", "str", False),
        4: ("op_type", "str", False),
        5: ("attribute", "AttributeProto", True),
        7: ("domain", "str", False),
    },
    "AttributeProto": {
        1: ("name", "str", False),
        2: ("f", "floats", False),
        3: ("i", "int", False),
        4: ("s", "bytes", False),
        5: ("t", "TensorProto", False),
        7: ("floats", "floats", True),
        8: ("ints", "ints", True),
        9: ("strings", "bytes", True),
        20: ("type", "int", False),
    },
    "TensorProto": {
        1: ("dims", "ints", True),
        2: ("data_type", "int", False),
        4: ("float_data", "floats", True),
        5: ("int32_data", "ints", True),
        7: ("int64_data", "ints", True),
        8: ("name", "str", False),
        9: ("raw_data", "bytes", False),
    },
    "ValueInfoProto": {1: ("name", "str", False), 2: ("type", "TypeProto", False)},
    "TypeProto": {1: ("tensor_type", "TypeProto.Tensor", False)},
    "TypeProto.Tensor": {1: ("elem_type", "int", False), 2: ("shape", "TensorShapeProto", False)},
    "TensorShapeProto": {1: ("dim", "TensorShapeProto.Dimension", True)},
    "TensorShapeProto.Dimension": {1: ("dim_value", "int", False), 2: ("dim_param", "str", False)},
}
REFUSED: dict[str, dict[int, str]] = {
    "ModelProto": {
        4: "domain",
        5: "model_version",
        6: "doc_string",
        14: "metadata_props",
        20: "training_info",
        25: "functions (model-local functions)",
        26: "configuration",
    },
    "GraphProto": {
        10: "doc_string",
        13: "value_info",
        14: "quantization_annotation",
        15: "sparse_initializer",
        16: "metadata_props",
    },
    "NodeProto": {6: "doc_string", 8: "overload", 9: "metadata_props", 10: "device_configurations"},
    "AttributeProto": {
        6: "g (a subgraph)",
        10: "tensors",
        11: "graphs (subgraphs)",
        13: "doc_string",
        14: "tp",
        15: "type_protos",
        21: "ref_attr_name",
        22: "sparse_tensor",
        23: "sparse_tensors",
    },
    "TensorProto": {
        3: "segment",
        6: "string_data",
        10: "double_data",
        11: "uint64_data",
        12: "doc_string",
        13: "external_data",
        14: "data_location",
        16: "metadata_props",
    },
    "ValueInfoProto": {3: "doc_string", 4: "metadata_props"},
    "TypeProto": {4: "sequence_type", 5: "map_type", 8: "sparse_tensor_type", 9: "optional_type"},
}

Message = dict[str, Any]  # field name -> value, or list of values for a repeated field


def decode(data: bytes, kind: str) -> Message:
    """One message of the schema above; NotCanonicalError on any field outside it."""
    schema = _SCHEMA[kind]
    message: Message = {}
    for number, wire, value in _fields(data):
        if number not in schema:
            name = REFUSED.get(kind, {}).get(number, f"field {number}")
            raise NotCanonicalError(f"it has {kind}.{name}, which the exporter never writes")
        name, field_kind, repeated = schema[number]
        if field_kind in _SCHEMA:
            if wire != 2:
                raise NotCanonicalError(f"{kind}.{name} is not a message")
            item: Any = decode(bytes(value), field_kind)
        elif field_kind == "int":
            if wire != 0:
                raise NotCanonicalError(f"{kind}.{name} is not a number")
            item = _signed(value)
        elif field_kind in ("str", "bytes"):
            if wire != 2:
                raise NotCanonicalError(f"{kind}.{name} is not a string")
            item = bytes(value).decode("utf-8") if field_kind == "str" else bytes(value)
        elif field_kind == "ints":
            item = _ints(wire, value)
        else:
            item = _floats(wire, value)
        if repeated:
            many = item if field_kind in ("ints", "floats") else [item]
            message.setdefault(name, []).extend(many)
        elif name in message:
            # protobuf merges a repeated singular field; onnxruntime would see the merge
            raise NotCanonicalError(f"{kind}.{name} appears twice")
        else:
            message[name] = item[0] if field_kind == "floats" else item
    return message


def _ints(wire: int, value: Any) -> list[int]:
    if wire == 0:
        return [_signed(value)]
    if wire != 2:
        raise NotCanonicalError("a list of integers has the wrong wire type")
    found, at, data = [], 0, bytes(value)
    while at < len(data):
        number, at = _varint(data, at)
        found.append(_signed(number))
    return found


def _floats(wire: int, value: Any) -> list[float]:
    if wire not in (2, 5) or len(value) % 4:
        raise NotCanonicalError("a list of floats has the wrong wire type")
    floats: list[float] = np.frombuffer(bytes(value), dtype="<f4").astype(float).tolist()
    return floats
