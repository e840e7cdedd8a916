"""The portable training path runs no kernel known to round differently from one CPU to the
next: what an Intel and an AMD processor were measured to disagree on (MKL's vector sqrt,
shared by Adam's and Adagrad's default steps) and what generates code for the CPU it runs on
(oneDNN's LSTM layer) are off the path, and the card records each choice."""

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from training import data
from training import train as training
from training.model import Cell

# ATen ops whose CPU kernels round by vendor or generate code per CPU (training.kernels).
VENDOR_DEPENDENT = {
    "sqrt",
    "rsqrt",
    "_foreach_sqrt",
    "mkldnn_rnn_layer",
    "mkldnn_rnn_layer_backward",
}


class _Ops(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Records the name of every ATen op run under it."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.names: set[str] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.names.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def _ops_of_a_few_steps(recipe: training.Recipe, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    whole = data.batches

    def three(*args: Any, **kwargs: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for index, batch in enumerate(whole(*args, **kwargs)):
            if index == 3:
                return
            yield batch

    monkeypatch.setattr(training, "batches", three)
    ops = _Ops()
    with ops:
        training.train(replace(recipe, max_epochs=1, min_epochs=1), progress=False)
    return ops.names


@pytest.mark.parametrize(
    ("recipe", "cell"), [("post", "rnn"), ("robust", "rnn"), ("robust", "gru"), ("robust", "lstm")]
)
def test_training_runs_no_kernel_that_rounds_by_vendor(
    recipe: str, cell: Cell, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = _ops_of_a_few_steps(training.RECIPES[recipe](cell=cell), monkeypatch)
    assert {"mm", "tanh_backward"} & names  # the recorder saw the training step
    assert any(name.startswith("_fused_") for name in names)  # the optimizer's fused step
    assert names & VENDOR_DEPENDENT == set()


def test_the_card_records_every_knob_of_a_portable_run() -> None:
    recipe = replace(training.post_recipe(seed=0), max_epochs=1)
    used = training.train(recipe, progress=False).kernels
    assert used.mode == "portable"
    assert used.aten_capability == "DEFAULT"
    assert used.blas in ("mkl COMPATIBLE", "not MKL (the build's own BLAS)")
    assert used.onednn == "off"
    assert used.optimizer_step == "fused"
    assert used.numpy_simd  # e.g. "X86_V2 X86_V3": it moves the proof's last bits
