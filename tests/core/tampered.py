"""Copies of the shipped models/counter.onnx changed as someone with write access to models/
would: the weights kept (so the proof still passes), the graph around them changed. Each is
built with the `onnx` package from the shipped file; TAMPERINGS pairs each with the words its
refusal must contain (core.canonical).
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SHIPPED = Path(__file__).parents[2] / "models" / "counter.onnx"
EVIL = "counter.evil"
LONG = 2000  # the attack answers 7s on inputs longer than this; the warm-up stops near 1000


def shipped() -> onnx.ModelProto:
    return onnx.load(SHIPPED)


def _node(model: onnx.ModelProto, op: str) -> onnx.NodeProto:
    node: onnx.NodeProto = next(n for n in model.graph.node if n.op_type == op)
    return node


def _boosting_softmax() -> onnx.FunctionProto:
    """softmax(x + 100 [digit 7]) once the input has more than LONG steps; softmax(x) before."""
    boost = np.zeros(10, dtype=np.float32)
    boost[7] = 100.0
    one, limit = np.array(1, np.int64), np.array(LONG, np.int64)
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Constant", [], ["one"], value=numpy_helper.from_array(one)),
        helper.make_node("Gather", ["shape", "one"], ["steps"], axis=0),
        helper.make_node("Constant", [], ["limit"], value=numpy_helper.from_array(limit)),
        helper.make_node("Greater", ["steps", "limit"], ["long"]),
        helper.make_node("Cast", ["long"], ["on"], to=TensorProto.FLOAT),
        helper.make_node("Constant", [], ["boost"], value=numpy_helper.from_array(boost)),
        helper.make_node("Mul", ["on", "boost"], ["bias"]),
        helper.make_node("Add", ["x", "bias"], ["z"]),
        helper.make_node("Softmax", ["z"], ["y"], axis=-1),
    ]
    return helper.make_function(EVIL, "Softmax", ["x"], ["y"], nodes, [helper.make_opsetid("", 17)])


def softmax_backed_by_a_local_function(model: onnx.ModelProto) -> None:
    """The reported attack: the final Softmax moved to a custom domain whose model-local
    function adds 100 to digit 7's logit on inputs of more than LONG steps."""
    softmax = _node(model, "Softmax")
    softmax.domain = EVIL
    del softmax.attribute[:]
    model.functions.append(_boosting_softmax())
    model.opset_import.append(helper.make_opsetid(EVIL, 1))


def an_unused_local_function(model: onnx.ModelProto) -> None:
    model.functions.append(_boosting_softmax())


def an_extra_opset_import(model: onnx.ModelProto) -> None:
    model.opset_import.append(helper.make_opsetid(EVIL, 1))


def a_node_in_another_domain(model: onnx.ModelProto) -> None:
    """'ai.onnx' names the default domain to onnxruntime, but it is not what the exporter writes."""
    _node(model, "Softmax").domain = "ai.onnx"


def an_extra_output(model: onnx.ModelProto) -> None:
    model.graph.output.append(
        helper.make_tensor_value_info("/counter/readout/Add_output_0", TensorProto.FLOAT, None)
    )


def a_second_input(model: onnx.ModelProto) -> None:
    model.graph.input.append(helper.make_tensor_value_info("scale", TensorProto.FLOAT, [1]))


def an_initializer_an_input_overrides(model: onnx.ModelProto) -> None:
    """The readout bias made a graph input too: onnxruntime then takes a caller's value."""
    model.graph.input.append(
        helper.make_tensor_value_info("counter.readout.bias", TensorProto.FLOAT, [10])
    )


def an_extra_node(model: onnx.ModelProto) -> None:
    """An Identity between the readout and the softmax."""
    softmax = _node(model, "Softmax")
    identity = helper.make_node("Identity", [softmax.input[0]], ["logits"], name="/Identity")
    softmax.input[0] = "logits"
    model.graph.node.insert(list(model.graph.node).index(softmax), identity)


def an_extra_initializer(model: onnx.ModelProto) -> None:
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(3, np.float32), "spare"))


def a_changed_attribute(model: onnx.ModelProto) -> None:
    """axis 2 is the last axis too: the same numbers, not the exporter's graph."""
    (axis,) = _node(model, "Softmax").attribute
    axis.i = 2


def an_added_attribute(model: onnx.ModelProto) -> None:
    """A clip on the RNN's pre-activations, far enough out to change few answers."""
    _node(model, "RNN").attribute.append(helper.make_attribute("clip", 1000.0))


def a_changed_constant(model: onnx.ModelProto) -> None:
    """The initial state filled with 0.01 instead of zeros."""
    fill = _node(model, "ConstantOfShape").attribute[0]
    fill.t.CopyFrom(numpy_helper.from_array(np.array([0.01], np.float32)))


def weights_in_two_fields(model: onnx.ModelProto) -> None:
    """The readout bias given twice, in raw_data and in float_data: which one a reader takes
    is its own choice, so the proof and onnxruntime could read different weights."""
    bias = next(t for t in model.graph.initializer if t.name == "counter.readout.bias")
    bias.float_data.extend(np.zeros(10, np.float32).tolist())


def metadata(model: onnx.ModelProto) -> None:
    helper.set_model_props(model, {"note": "harmless, or so it says"})


def a_graph_doc_string(model: onnx.ModelProto) -> None:
    model.graph.doc_string = "not written by the exporter"


def value_info(model: onnx.ModelProto) -> None:
    model.graph.value_info.append(
        helper.make_tensor_value_info("/counter/Cast_output_0", TensorProto.FLOAT, None)
    )


def another_ir_version(model: onnx.ModelProto) -> None:
    model.ir_version = 9


Tampering = Callable[[onnx.ModelProto], None]

# each tampering, and words its refusal must contain
TAMPERINGS: list[tuple[Tampering, str]] = [
    (softmax_backed_by_a_local_function, "ModelProto.functions"),
    (an_unused_local_function, "ModelProto.functions"),
    (an_extra_opset_import, f"opset_import ai.onnx 17, {EVIL} 1"),
    (a_node_in_another_domain, "ai.onnx::Softmax"),
    (an_extra_output, "output /counter/readout/Add_output_0"),
    (a_second_input, "input scale"),
    (an_initializer_an_input_overrides, "'counter.readout.bias' has the name of a graph input"),
    (an_extra_node, "Identity("),
    (an_extra_initializer, "initializer w5"),
    (a_changed_attribute, "axis=2"),
    (an_added_attribute, "clip=1000.0"),
    (a_changed_constant, "value=float32[1][0.009999"),
    (weights_in_two_fields, "float32[10]<values in float_data>"),
    (metadata, "ModelProto.metadata_props"),
    (a_graph_doc_string, "GraphProto.doc_string"),
    (value_info, "GraphProto.value_info"),
    (another_ir_version, "ir_version 9"),
]


def tampered(tampering: Tampering) -> bytes:
    """The shipped counter.onnx with this change, as a file's bytes."""
    model = shipped()
    tampering(model)
    blob: bytes = model.SerializeToString()
    return blob


def repeated_singular_field() -> bytes:
    """The shipped file with a second ir_version appended: protobuf keeps the last one."""
    return SHIPPED.read_bytes() + b"\x08\x09"  # field 1 (ir_version), varint 9
