"""The exact carry scan: every run of k nines, every next digit, every 3-digit tail after it.

An empirical figure beside the proof (core.certify): digits are read least significant first,
so when the model reads "k nines, then d, then t1 t2 t3" it has seen nothing else yet, and
its first k + 4 output digits depend on those digits alone. Checking every such case for
k <= up_to is exact for those digits, not a sample; failures need not be monotone in k
(a model can carry 12 nines right and 11 wrong), so the scan lists every failing k.

Cost: the nines are run once (one sequence of `up_to` steps); from the state after each k
nines the scan branches one digit at a time: 9 next digits, then 10 x 10 x 10 tails, a tree of
about 10^4 single steps per k, run in big batches: about 3 s to 1000 nines in onnxruntime.

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

from core.card import CarryFailure, CarryScan
from core.codec import add_one, decode
from training.evaluate import ort_session

States = npt.NDArray[Any]
Digits = npt.NDArray[np.int64]

TAIL_DIGITS = 3
# Runs of nines per batch of branches: 9 * 10^3 * this many leaves keeps arrays to ~50 MB.
CHUNK = 64


class CarryEngine(Protocol):
    """A model that can run a run of nines once and later resume from any of its states."""

    @property
    def name(self) -> str:
        """What ran the scan (recorded in the card as its engine)."""
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

    def step(self, states: States, digits: Digits) -> tuple[Digits, States]:
        """From states (N, ...) read one digit each (N,): output digits (N,), new states."""
        ...


@dataclass(frozen=True)
class _Case:
    """One failing input of the scan, as digits in reading order (least significant first)."""

    nines: int
    read: list[int]  # what was read after the nines: d, then tail digits


def _runs(failing: npt.NDArray[np.int64]) -> list[tuple[int, int]]:
    """Sorted ks -> [first, last] ranges of consecutive values."""
    if failing.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(failing) != 1)
    starts = np.concatenate([[0], breaks + 1])
    stops = np.concatenate([breaks, [failing.size - 1]])
    return [(int(failing[a]), int(failing[b])) for a, b in zip(starts, stops, strict=True)]


def _branch(
    engine: CarryEngine, states: States, tail: int
) -> tuple[npt.NDArray[np.bool_], list[int] | None]:
    """From n states (after k nines each), read every d in 0-8, then every tail.

    Returns which of the n states lead to some wrong digit, and for the first of them the
    digits read after the nines up to its first wrong output.
    """
    count = states.shape[0]
    wrong = np.zeros(count, dtype=bool)
    first_paths: dict[int, list[int]] = {}  # a failing state -> its shortest failing path
    origin = np.repeat(np.arange(count), 9)  # (rows,): the state each row came from
    paths = np.tile(np.arange(9), count)[:, None]  # (rows, digits read after the nines)
    current = states[origin]
    for level in range(tail + 1):
        if level:
            digit = np.tile(np.arange(10), paths.shape[0])
            origin = np.repeat(origin, 10)
            paths = np.concatenate([np.repeat(paths, 10, axis=0), digit[:, None]], axis=1)
            current = np.repeat(current, 10, axis=0)
        outputs, current = engine.step(current, paths[:, -1])
        # d is read with the carry (d + 1 is right); the tail digits are copied.
        right = paths[:, -1] + 1 if level == 0 else paths[:, -1]
        bad = np.flatnonzero(outputs != right)
        if bad.size:
            wrong[origin[bad]] = True
            row = bad[np.argmin(origin[bad])]  # the smallest state failing at this level
            first_paths.setdefault(int(origin[row]), paths[row].tolist())
    failing = np.flatnonzero(wrong)
    return wrong, first_paths[int(failing[0])] if failing.size else None


def _example(engine: CarryEngine, nines: int, read: list[int]) -> CarryFailure:
    """The failing input written out, with the exact answer and the model's.

    Leading zeros are dropped when the wrong digit is still among the number's own steps
    (its digits and the extra zero step): "099999" fails exactly as "99999" does.
    """
    number = "".join(map(str, reversed(read))) + "9" * nines
    next_digit = read[0] if read else None
    canonical = number.lstrip("0") or "0"
    if nines + len(read) <= len(canonical) + 1:  # the wrong step is within canonical's
        number, read = canonical, read[: len(canonical) - nines]
    state = engine.initial_state()
    got: list[int] = []
    for digit in [9] * nines + read + [0]:  # the extra zero step holds a carry out
        out, state = engine.step(state, np.array([digit], dtype=np.int64))
        got.append(int(out[0]))
    return CarryFailure(
        nines=nines,
        next_digit=next_digit,
        example=number,
        expected=add_one(number),
        got=decode(np.array(got)),
    )


def scan_carries(engine: CarryEngine, up_to: int, *, tail: int = TAIL_DIGITS) -> CarryScan:
    """Check every k in 0..up_to nines, then every d in 0-8, then every `tail`-digit tail.

    For k nines then d the right output is k zeros, then d + 1, then the tail copied (the carry
    is spent at d). The number made of k nines alone is the d = 0 case (its extra zero step is
    a 0 read after the nines). The tail also catches a carry that never switches off.
    """
    if up_to < 0 or tail < 0:
        raise ValueError(f"need up_to >= 0 and tail >= 0; got {up_to} and {tail}")
    nine_states, nine_digits = engine.run_nines(up_to)  # (up_to, ...), (up_to,)
    states = np.concatenate([engine.initial_state(), nine_states])  # row k: after k nines

    # A wrong digit while reading the nines: every longer run fails there too.
    wrong_nines = np.flatnonzero(np.asarray(nine_digits) != 0)
    fails = np.zeros(up_to + 1, dtype=bool)
    first: _Case | None = None
    if wrong_nines.size:
        fails[wrong_nines[0] + 1 :] = True
        first = _Case(nines=int(wrong_nines[0]) + 1, read=[])
    for start in range(0, up_to + 1, CHUNK):
        ks = np.arange(start, min(start + CHUNK, up_to + 1))
        wrong, path = _branch(engine, states[ks], tail)
        fails[ks] |= wrong
        if path is not None:
            k = int(ks[np.flatnonzero(wrong)[0]])
            if first is None or k < first.nines:
                first = _Case(nines=k, read=path)
    failing = np.flatnonzero(fails)
    return CarryScan(
        engine=engine.name,
        scanned_up_to=up_to,
        tail_digits=tail,
        cases=(up_to + 1) * 9 * 10**tail,
        longest_exact_run=int(failing[0]) - 1 if failing.size else up_to,
        failing_runs=_runs(failing),
        first_failure=None if first is None else _example(engine, first.nines, first.read),
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

    def step(self, states: States, digits: Digits) -> tuple[Digits, States]:
        chosen, hidden = self._run(states, digits[:, None])
        return chosen[:, 0], hidden[0]
