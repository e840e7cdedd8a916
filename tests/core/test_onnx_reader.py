"""The ONNX reader reads what the `onnx` package reads: every node, attribute and constant of
the shipped models and of exported RNN, GRU and LSTM graphs, and refuses what is not ONNX."""

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper

from core.onnx_reader import OnnxFormatError, read_model
from training.model import Counter, ModelConfig
from training.onnx_graph import export_onnx

MODELS = Path(__file__).resolve().parents[2] / "models"


def _same(value: Any, theirs: Any) -> bool:
    if isinstance(theirs, onnx.TensorProto):
        return np.array_equal(value.array(), numpy_helper.to_array(theirs))
    if isinstance(theirs, list):
        same_length = len(value) == len(theirs)
        return same_length and all(_same(a, b) for a, b in zip(value, theirs, strict=False))
    if isinstance(theirs, float):
        return bool(np.float32(value) == np.float32(theirs))
    return bool(value == theirs)


def _compare(blob: bytes) -> None:
    ours, theirs = read_model(blob).graph, onnx.load_model_from_string(blob).graph
    assert [i.name for i in ours.input] == [i.name for i in theirs.input]
    assert [o.name for o in ours.output] == [o.name for o in theirs.output]
    assert len(ours.node) == len(theirs.node)
    for mine, node in zip(ours.node, theirs.node, strict=True):
        assert (mine.op_type, mine.name, mine.domain) == (node.op_type, node.name, node.domain)
        assert (mine.input, mine.output) == (list(node.input), list(node.output))
        expected = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        got = {a.name: a.value() for a in mine.attribute}
        assert set(got) == set(expected)
        assert all(_same(got[name], expected[name]) for name in expected), node.op_type
    for constant, tensor in zip(ours.initializer, theirs.initializer, strict=True):
        assert constant.name == tensor.name
        np.testing.assert_array_equal(constant.array(), numpy_helper.to_array(tensor))


@pytest.mark.parametrize("name", ["counter", "counter-post"])
def test_the_shipped_models_read_as_onnx_reads_them(name: str) -> None:
    _compare((MODELS / f"{name}.onnx").read_bytes())


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_exported_graphs_of_every_cell_read_as_onnx_reads_them(cell: str, tmp_path: Path) -> None:
    torch.manual_seed(3)
    path = tmp_path / f"{cell}.onnx"
    export_onnx(Counter(ModelConfig(cell=cell, hidden_size=8)), path)  # type: ignore[arg-type]
    _compare(path.read_bytes())


def test_every_attribute_kind_and_raw_and_listed_tensor_data() -> None:
    listed = helper.make_tensor("listed", onnx.TensorProto.FLOAT, [2, 2], [1.5, -2.0, 3.25, 0.0])
    raw = numpy_helper.from_array(np.arange(6, dtype=np.int64).reshape(2, 3), "raw")
    node = helper.make_node(
        "Custom",
        ["x"],
        ["y"],
        name="n",
        f=0.5,
        i=-7,
        s=b"text",
        t=raw,
        floats=[1.0, 2.5],
        ints=[-1, 2, 1 << 40],
        strings=[b"a", b"bc"],
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
        [listed, raw],
    )
    _compare(helper.make_model(graph).SerializeToString())


@pytest.mark.parametrize("blob", [b"", b"not an onnx file at all", b"\x0a\xff\xff"])
def test_other_bytes_are_refused(blob: bytes) -> None:
    with pytest.raises(OnnxFormatError):
        read_model(blob)
