"""A model's certificate as its card records it (core.card.Certificate): the proof of its
reliable carry length (core.certify) run on its cell, from RNN, GRU or LSTM weights or from an
exported graph."""

import math

from core.card import Certificate
from core.carry_proof import CarryProof
from core.cells import Cell, GruCell, LstmCell, RnnCell
from core.certify import (
    DEFAULT_LIMIT,
    DEFAULT_TANH_ERROR,
    KEY_DIGITS,
    TIGHT_TANH_ERROR,
    TRANSIENT,
    prove_carry,
)
from core.weights import (
    GruWeights,
    LstmWeights,
    ModelSource,
    RnnWeights,
    UnsupportedModelError,
    Weights,
    recurrent_weights_from_onnx,
)

METHOD = (
    "interval boxes by phase (carrying after j nines; carry absorbed, keyed by the digit; "
    "copying, keyed by steps since then and the last digit), iterated to a fixed point"
)
MARGIN_STEPS = 1_000_000  # the card keeps the margin to 1e-6, rounded down


def certificate(proof: CarryProof, tanh_error: float) -> Certificate:
    """The card's record of a proof."""
    return Certificate(
        method=METHOD,
        proved_carry_length="unbounded" if proof.reliable is None else proof.reliable,
        certified=proof.unbounded,
        margin=_card_margin(proof.margin),
        iterations=proof.iterations,
        boxes=proof.boxes,
        key_digits=proof.key_digits,
        transient_steps=proof.transient,
        search_limit=proof.limit,
        tanh_error_bound=tanh_error,
        reason=proof.reason,
    )


def _card_margin(margin: float | None) -> float | None:
    """The margin as the card records it: rounded down to 1e-6.

    Rounding down keeps it a true lower bound, and drops the last bits, which depend on which
    BLAS kernel numpy picks on this processor, so a retrain elsewhere writes the same card.
    """
    return None if margin is None else math.floor(margin * MARGIN_STEPS) / MARGIN_STEPS


def cell_of(weights: Weights, tanh_error: float = DEFAULT_TANH_ERROR) -> Cell:
    """The certificate's cell for RNN, GRU or LSTM weights; tanh_error is the allowance of
    every deployed tanh and sigmoid."""
    if isinstance(weights, RnnWeights):
        return RnnCell(weights, tanh_error)
    if isinstance(weights, GruWeights):
        return GruCell(weights, tanh_error)
    if isinstance(weights, LstmWeights):
        return LstmCell(weights, tanh_error)
    raise TypeError(f"no cell for {type(weights).__name__}")


def cell_from_onnx(model: ModelSource, tanh_error: float = DEFAULT_TANH_ERROR) -> Cell:
    """The cell of an exported RNN, GRU or LSTM graph, as the proof reads it
    (UnsupportedModelError for any other graph); tanh_error is the allowance of every deployed
    tanh and sigmoid."""
    return cell_of(recurrent_weights_from_onnx(model), tanh_error)


def certify(
    cell: Cell,
    *,
    limit: int = DEFAULT_LIMIT,
    key_digits: int = KEY_DIGITS,
    transient: int = TRANSIENT,
    max_iterations: int = 2000,
) -> Certificate:
    """The proof of a cell's reliable carry length under its own allowance, as the card
    records it."""
    proof = prove_carry(
        cell, limit, key_digits=key_digits, transient=transient, max_iterations=max_iterations
    )
    return certificate(proof, cell.activation_error)


# The activation allowances a proof is tried under, loosest first (see prove_weights).
ALLOWANCES = (DEFAULT_TANH_ERROR, TIGHT_TANH_ERROR)


def prove_weights(weights: Weights, limit: int = DEFAULT_LIMIT) -> tuple[CarryProof, float]:
    """The proof of the weights' reliable carry length, and the allowance of every deployed
    tanh and sigmoid it holds under: each of ALLOWANCES in turn until one proves every length,
    and of those tried, the loosest that proves the most.

    A proof holds wherever onnxruntime's kernels stay within its allowance (the service
    measures them at every load and refuses a card whose allowance they exceed), so a looser
    one holds on more builds. But where a GRU's update gate keeps 1 - z below the allowance,
    the allowed error can stop that unit contracting, and no box of carrying states holds its
    own image (robust-gru seed 6 in docs/proof.md).
    """
    proofs: list[tuple[CarryProof, float]] = []
    for allowance in ALLOWANCES:
        proof = prove_carry(cell_of(weights, allowance), limit)
        proofs.append((proof, allowance))
        if proof.unbounded:
            break
    # max keeps the first of equals: the loosest allowance
    return max(proofs, key=lambda tried: _reach(tried[0]))


def _reach(proof: CarryProof) -> float:
    return math.inf if proof.reliable is None else proof.reliable


def certify_onnx(model: ModelSource, *, limit: int = DEFAULT_LIMIT) -> Certificate:
    """prove_weights() on an exported graph, as the card records it; a graph the boxes do not
    cover proves nothing (K = -1)."""
    try:
        weights = recurrent_weights_from_onnx(model)
    except UnsupportedModelError as error:
        return certificate(
            CarryProof(KEY_DIGITS, TRANSIENT, -1, None, 0, 0, limit, str(error)),
            DEFAULT_TANH_ERROR,
        )
    return certificate(*prove_weights(weights, limit))
