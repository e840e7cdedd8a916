"""The ONNX graph of a Counter: `export_onnx` writes it (digits int64 [batch, time] ->
probabilities float32 [batch, time, 10], torch.onnx's legacy exporter, opset 17), and
`counter_from_onnx` reads one back into a torch Counter. The service accepts only this graph
(core.canonical)."""

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn
from torch.jit._trace import TracerWarning

from core.weights import GruWeights, LstmWeights, Weights, recurrent_weights_from_onnx
from training.model import Cell as CellName
from training.model import Counter, ModelConfig, Probabilities
from training.proof import onnx_rows

OPSET = 17


def export_onnx(counter: Counter, path: Path) -> None:
    """Digits int64 [batch, time] -> probabilities float32 [batch, time, 10], both axes dynamic."""
    export_module(Probabilities(counter), path)


def export_module(module: nn.Module, path: Path) -> None:
    """Export any digits -> probabilities module with the project's contract and exporter.

    The legacy (TorchScript) exporter: in torch 2.13 the dynamo exporter silently fixes the
    sequence length to the example's; this one keeps the native RNN/LSTM/GRU op.
    """
    module.eval()
    example = torch.zeros(1, 3, dtype=torch.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # It warns that a batch size other than the example's may fail; the tests run batch
        # sizes 1-8 and lengths 1-10^4 against torch.
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size")
        # The legacy exporter is chosen on purpose (above); its tracing notes are expected.
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript")
        warnings.filterwarnings("ignore", message="The feature will be removed")
        warnings.filterwarnings("ignore", category=TracerWarning)
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=["digits"],
            output_names=["probabilities"],
            dynamic_axes={
                "digits": {0: "batch", 1: "time"},
                "probabilities": {0: "batch", 1: "time"},
            },
            opset_version=OPSET,
            dynamo=False,
        )


def counter_from_onnx(model: str | Path | onnx.ModelProto) -> Counter:
    """The torch Counter an exported RNN, GRU or LSTM graph holds (eval mode): export_onnx
    undone.

    Reads the weights with core.weights.recurrent_weights_from_onnx, so only the graph
    export_onnx writes is accepted (UnsupportedModelError otherwise).
    """
    return counter_from_weights(recurrent_weights_from_onnx(model))


def counter_from_weights(weights: Weights) -> Counter:
    """A Counter (eval mode) holding the given tanh RNN, GRU or LSTM weights, rounded to
    float32; gate blocks go back from ONNX's order to PyTorch's (training.proof.model_weights
    undone)."""
    cell: CellName = (
        "gru"
        if isinstance(weights, GruWeights)
        else "lstm"
        if isinstance(weights, LstmWeights)
        else "rnn"
    )
    counter = Counter(ModelConfig(cell=cell, hidden_size=weights.hidden_size)).eval()
    order = np.argsort(onnx_rows(cell, weights.hidden_size))  # ONNX's gate order -> PyTorch's
    with torch.no_grad():
        for name, value in [
            ("cell.weight_ih_l0", weights.w_ih[order]),
            ("cell.weight_hh_l0", weights.w_hh[order]),
            ("cell.bias_ih_l0", weights.b_ih[order]),
            ("cell.bias_hh_l0", weights.b_hh[order]),
            ("readout.weight", weights.w_out),
            ("readout.bias", weights.b_out),
        ]:
            counter.get_parameter(name).copy_(torch.from_numpy(value))  # float64 -> float32
    return counter
