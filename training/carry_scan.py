"""The reliable carry length, measured exactly: every run of k nines for k up to a bound.

DESIGN.md: the reliable carry length is the largest K such that for every k <= K and every
next digit d in 0-8, and for the number made of k nines alone, the model's first k + 1 output
digits are right. Digits are read least significant first, so when the model reads "k nines,
then d" it has seen nothing else yet: the carry part of the answer depends on k and d only, and
checking every (k, d) is exact, not a sample.

Cost: the nines are run once (one sequence of `up_to` steps); from the hidden state after each
k nines the scan branches into "d, then a few random digits" for d in 0-8, all in big batches.
So a scan to 10^5 is ~10^5 sequential steps plus 9 * 10^5 short branches: seconds.

The scan core is engine-agnostic (`CarryEngine`); `OnnxCarryEngine` runs the exported ONNX
graph itself in onnxruntime (the deployed arithmetic), with its recurrent op's initial state
exposed as an input and its hidden states as an output.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from app.card import CarryFailure
from training.evaluate import ort_session

States = npt.NDArray[Any]
Digits = npt.NDArray[np.int64]

# Rows per branch call: 9 * this many (k, d) pairs at once keeps arrays to tens of MB.
BRANCH_CHUNK = 8192


class CarryEngine(Protocol):
    """A model that can run a run of nines once and later resume from any of its states."""

    @property
    def name(self) -> str:
        """What ran the scan (recorded in the card as carry_scan_engine)."""
        ...

    def initial_state(self) -> States:
        """The state before any digit is read, shape (1, ...): k = 0 branches from it."""
        ...

    def run_nines(self, k: int) -> tuple[States, Digits]:
        """Read k nines from the initial state.

        Returns the state after each nine, (k, ...) with row i = after i + 1 nines, and the
        output digit (argmax) at each of those k steps, (k,).
        """
        ...

    def branch(self, states: States, tails: Digits) -> Digits:
        """Continue from states (N, ...) reading tails (N, T); the output digits (N, T)."""
        ...


@dataclass(frozen=True)
class CarryScan:
    """The outcome of scan_carries: what the card records about the carry."""

    reliable_length: int  # largest K with every k <= K right; -1 if even k = 0 fails
    scanned_up_to: int  # every k in 0..scanned_up_to was checked
    first_failure: CarryFailure | None  # the smallest failing k (None: all right)
    failures: int  # how many k in 0..scanned_up_to have some wrong carry
    engine: str


def scan_carries(
    engine: CarryEngine, up_to: int, *, tail: int = 3, seed: int = 0, chunk: int = BRANCH_CHUNK
) -> CarryScan:
    """Check every k in 0..up_to nines followed by every d in 0-8 (then `tail` random digits).

    For k nines then d the right output is k zeros, then d + 1, then the tail copied (the carry
    is spent at d, so every later digit is unchanged). The k nines alone (099..9 -> 100..0) is
    the d = 0 case: the number's extra zero step is the digit 0 read after the nines, and only
    the first k + 1 outputs count, so "k nines then 0" covers it. The tail is a stricter check
    than the definition: the model must also stop carrying.
    """
    if up_to < 0 or tail < 0 or chunk < 1:
        raise ValueError(f"need up_to >= 0, tail >= 0, chunk >= 1; got {up_to}, {tail}, {chunk}")
    rng = np.random.default_rng(seed)
    nine_states, nine_digits = engine.run_nines(up_to)  # (up_to, ...), (up_to,)
    states = np.concatenate([engine.initial_state(), nine_states])  # row k: after k nines

    # k fails if any output while reading its nines is not 0: wrong at step j -> k > j fail.
    wrong_nines = np.flatnonzero(np.asarray(nine_digits) != 0)
    prefix_fails = np.zeros(up_to + 1, dtype=bool)
    if wrong_nines.size:
        prefix_fails[wrong_nines[0] + 1 :] = True

    next_digits = np.arange(9, dtype=np.int64)
    branch_fail_digit = np.full(up_to + 1, -1, dtype=np.int64)  # smallest failing d per k
    for start in range(0, up_to + 1, chunk):
        ks = np.arange(start, min(start + chunk, up_to + 1))
        rows_k = np.repeat(ks, 9)  # (N,) with N = 9 * len(ks)
        rows_d = np.tile(next_digits, len(ks))  # (N,)
        tails = np.empty((rows_k.size, 1 + tail), dtype=np.int64)
        tails[:, 0] = rows_d
        tails[:, 1:] = rng.integers(0, 10, size=(rows_k.size, tail))
        expected = tails.copy()
        expected[:, 0] += 1
        got = engine.branch(states[rows_k], tails)  # (N, 1 + tail)
        wrong = (got != expected).any(axis=1).reshape(len(ks), 9)  # (k, d)
        first_d = np.where(wrong.any(axis=1), wrong.argmax(axis=1), -1)
        branch_fail_digit[ks] = first_d

    fails = prefix_fails | (branch_fail_digit >= 0)
    failing = np.flatnonzero(fails)
    first_failure = None
    if failing.size:
        k = int(failing[0])
        # A wrong digit among the nines themselves is the "k nines alone" failure.
        next_digit = None if prefix_fails[k] else int(branch_fail_digit[k])
        first_failure = CarryFailure(nines=k, next_digit=next_digit)
    return CarryScan(
        reliable_length=int(failing[0]) - 1 if failing.size else up_to,
        scanned_up_to=up_to,
        first_failure=first_failure,
        failures=int(failing.size),
        engine=engine.name,
    )


_RECURRENT_OPS = ("RNN", "GRU")
_INITIAL_H = 5  # input index of initial_h in the ONNX RNN / GRU / LSTM ops


def _prune(graph: onnx.GraphProto) -> None:
    """Drop nodes no graph output depends on (the zero initial-state builders)."""
    needed = {output.name for output in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
    del graph.node[:]
    graph.node.extend(reversed(kept))


def expose_recurrent_state(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[int]]:
    """A copy of the model whose recurrent ops take their initial state as graph inputs.

    Recurrent op i gets input `carry_initial_h_{i}` [1, batch, H] and its Y (every hidden
    state) becomes output `carry_hidden_{i}` [time, 1, batch, H]. Same ops, same weights.
    Returns the copy and each op's hidden size. RNN and GRU only: the ONNX LSTM op does not
    output its cell state per step, so a scan cannot resume an LSTM from a given step.
    """
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    graph = exposed.graph
    recurrent = [n for n in graph.node if n.op_type in (*_RECURRENT_OPS, "LSTM")]
    if not recurrent:
        raise ValueError("no recurrent op (RNN, GRU) in the ONNX graph: nothing to scan")
    if any(node.op_type == "LSTM" for node in recurrent):
        raise ValueError(
            "the ONNX carry scan supports RNN and GRU ops only: the ONNX LSTM op does not "
            "expose its cell state per step; scan an LSTM with a CarryEngine on the torch model"
        )
    sizes = []
    for index, node in enumerate(recurrent):
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        direction = attributes.get("direction", b"forward")
        if direction != b"forward":
            raise ValueError(f"{node.op_type} op {node.name!r} is {direction!r}, not forward")
        size = int(attributes["hidden_size"])
        sizes.append(size)
        state_in, states_out = f"carry_initial_h_{index}", f"carry_hidden_{index}"
        while len(node.input) <= _INITIAL_H:
            node.input.append("")
        node.input[_INITIAL_H] = state_in
        if not node.output:
            node.output.append("")
        if node.output[0]:
            states_out = node.output[0]
        else:
            node.output[0] = states_out
        graph.input.append(
            helper.make_tensor_value_info(state_in, TensorProto.FLOAT, [1, "batch", size])
        )
        graph.output.append(
            helper.make_tensor_value_info(states_out, TensorProto.FLOAT, ["time", 1, "batch", size])
        )
    _prune(graph)
    return exposed, sizes


class OnnxCarryEngine:
    """CarryEngine on the exported ONNX file in onnxruntime: the arithmetic that is deployed.

    The state is every recurrent op's hidden state side by side: (rows, sum of hidden sizes).
    """

    def __init__(self, model: str | Path | onnx.ModelProto) -> None:
        graph = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
        exposed, self._sizes = expose_recurrent_state(graph)
        self._state_inputs = [f"carry_initial_h_{i}" for i in range(len(self._sizes))]
        self._state_outputs = [o.name for o in exposed.graph.output][-len(self._sizes) :]
        self._session = ort_session(exposed)
        self.name = f"onnxruntime {ort.__version__}"

    def initial_state(self) -> States:
        return np.zeros((1, sum(self._sizes)), dtype=np.float32)

    def _run(self, states: States, digits: Digits) -> tuple[Digits, States]:
        """(N, state) and (N, T) -> output digits (N, T) and hidden states (T, N, state)."""
        feeds: dict[str, npt.NDArray[Any]] = {"digits": np.ascontiguousarray(digits)}
        offsets = np.cumsum([0, *self._sizes])
        for name, lo, hi in zip(self._state_inputs, offsets[:-1], offsets[1:], strict=True):
            feeds[name] = np.ascontiguousarray(states[:, lo:hi], dtype=np.float32)[None]
        probabilities, *hidden = self._session.run(["probabilities", *self._state_outputs], feeds)
        # hidden[i]: (T, 1, N, H_i) -> side by side (T, N, sum H)
        stacked = np.concatenate([h[:, 0] for h in hidden], axis=-1)
        return np.asarray(probabilities).argmax(axis=-1).astype(np.int64), stacked

    def run_nines(self, k: int) -> tuple[States, Digits]:
        if k == 0:
            return self.initial_state()[:0], np.zeros(0, dtype=np.int64)
        digits, hidden = self._run(self.initial_state(), np.full((1, k), 9, dtype=np.int64))
        return hidden[:, 0], digits[0]

    def branch(self, states: States, tails: Digits) -> Digits:
        digits, _ = self._run(states, tails)
        return digits
