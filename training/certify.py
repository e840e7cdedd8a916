"""A proof that a tanh RNN adds one right at every length: an invariant made of 20 boxes.

Adding one reads digits least significant first with a carry that starts at 1: output digit
(d + c) mod 10, next carry 1 iff c = 1 and d = 9. So every step of every input is one of 20
situations (carry in c, digit read d). For each we keep a box (per-unit interval) that must
hold every hidden state the network can reach in that situation:

- start: the first step reads d with carry 1 from h0 = 0, so box (1, d) holds f(0, d);
- step: box (c, d) hands its carry c' = [c = 1 and d = 9] on; pushing it through digit d'
  (interval arithmetic: tanh is monotone, W_hh spreads a box of radius r by |W_hh| r) lands
  in box (c', d'). Boxes are joined and pushed again until they map into themselves.

Once they do, by induction every reachable state of every input of every length lies in its
box. If on every box the right digit's logit beats every other for every point of the box (for
a linear readout the minimum over a box is exact), every output digit is right: leading zeros
and the extra zero step are just digit 0. The margin is the smallest such logit gap.

Soundness against the deployed float32 arithmetic: each step's pre-activation is widened by the
float32 rounding bound of its sum, gamma_n * sum|terms|, and each tanh output by `inflation`,
which covers onnxruntime's tanh error (measured at most 1.8e-7 over a dense grid of [-12, 12];
the default 1e-5 is 50 times that). The readout check likewise subtracts the float32 rounding
bound of both logits and a softmax slack. The tests re-measure the tanh error on the installed
onnxruntime and check that its float32 hidden states stay inside the boxes (without the
inflation they do not). Pure numpy, no torch.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx

from app.card import Certificate
from training.weights import RnnWeights, UnsupportedModelError, weights_from_onnx

Array = npt.NDArray[np.float64]

METHOD = "interval boxes keyed by (carry in, last digit), fixed point of the digit step"
BOXES = 20
MARGIN_STEPS = 1_000_000  # the card keeps the margin to 1e-6, rounded down
DEFAULT_INFLATION = 1e-5
# float32 unit roundoff: a sum of n float32 products is off by at most gamma_n * sum |terms|.
_U32 = 2.0**-24
# Extra logit gap on top of the rounding bound so float32 exp/divide keep the argmax strict.
SOFTMAX_SLACK = 1e-4


def _gamma(n: int) -> float:
    """Bound on the relative error of a float32 sum of n terms: |error| <= gamma * sum |terms|."""
    return n * _U32 / (1 - n * _U32)


def _step(weights: RnnWeights, lo: Array, hi: Array, inflation: float) -> tuple[Array, Array]:
    """Image of the box lo <= h <= hi (H,) under each digit: boxes (10, H), soundly widened."""
    centre, radius = (lo + hi) / 2, (hi - lo) / 2  # (H,)
    pre = weights.w_ih.T + (weights.w_hh @ centre + weights.b_ih + weights.b_hh)  # (10, H)
    spread = np.abs(weights.w_hh) @ radius  # (H,): exact half-width of w_hh @ box
    # float32 rounding of w_ih[:, d] + b_ih + w_hh @ h + b_hh in the deployed model
    magnitude = np.maximum(np.abs(lo), np.abs(hi))
    terms = np.abs(weights.w_hh) @ magnitude + np.abs(weights.b_ih) + np.abs(weights.b_hh)
    error = _gamma(weights.hidden_size + 3) * (terms + np.abs(weights.w_ih.T))  # (10, H)
    widen = spread + error
    return np.tanh(pre - widen) - inflation, np.tanh(pre + widen) + inflation


@dataclass(frozen=True)
class _Readout:
    """Worst case of the readout over one box: the digit that comes closest to the right one."""

    gap: float  # min over the box of logit(right) - logit(rival); certified needs > bound
    bound: float  # float32 rounding of both logits plus the softmax slack
    rival: int  # the digit with the least room: gap - bound smallest
    smallest_gap: float  # min over the box and over every other digit of the logit gap


def _readout(weights: RnnWeights, lo: Array, hi: Array, right: int) -> _Readout:
    centre, radius = (lo + hi) / 2, (hi - lo) / 2
    diff = weights.w_out[right] - weights.w_out  # (10, H): right row minus each rival
    gaps = diff @ centre - np.abs(diff) @ radius + (weights.b_out[right] - weights.b_out)
    magnitude = np.maximum(np.abs(lo), np.abs(hi))
    logit_error = _gamma(weights.hidden_size + 1) * (
        np.abs(weights.w_out) @ magnitude + np.abs(weights.b_out)
    )  # (10,)
    bounds = logit_error + logit_error[right] + SOFTMAX_SLACK  # (10,)
    slack = gaps - bounds
    slack[right] = np.inf
    rival = int(slack.argmin())
    # The least-slack rival need not have the smallest gap: the margin is the smallest gap.
    smallest_gap = float(np.delete(gaps, right).min())
    return _Readout(
        gap=float(gaps[rival]), bound=float(bounds[rival]), rival=rival, smallest_gap=smallest_gap
    )


def _name(carry: int, digit: int) -> str:
    return f"box (carry in {carry}, digit {digit})"


@dataclass(frozen=True)
class Boxes:
    """Box (c, d) holds every hidden state reachable right after reading d with carry in c."""

    lo: Array  # (2, 10, H); lo[c, d] <= h <= hi[c, d]; a box not reached has lo > hi
    hi: Array  # (2, 10, H)
    iterations: int  # pushes it took to find them (or to give up)
    margin: float | None  # smallest readout gap over the boxes, if the readout was checked
    failure: str | None  # None: a fixed point (an invariant); else why there is none

    def contains(self, carry: int, digit: int, states: Array) -> npt.NDArray[np.bool_]:
        """Which of the states (N, H) lie in box (carry, digit)."""
        inside = (self.lo[carry, digit] <= states) & (states <= self.hi[carry, digit])
        return np.asarray(inside.all(axis=-1))


def _readout_failure(weights: RnnWeights, lo: Array, hi: Array) -> tuple[float, str | None]:
    """The smallest readout gap over the reached boxes, and the first box where it fails."""
    margin = np.inf
    for carry, digit in zip(*np.nonzero(lo[..., 0] <= hi[..., 0]), strict=True):
        right = (digit + carry) % 10
        worst = _readout(weights, lo[carry, digit], hi[carry, digit], right)
        if worst.gap <= worst.bound:
            return worst.gap, (
                f"{_name(carry, digit)} reaches hidden states where digit {worst.rival} scores "
                f"within {worst.bound:.2g} of the right digit {right} or above it (worst logit "
                f"gap {worst.gap:.4g})"
            )
        margin = min(margin, worst.smallest_gap)
    return float(margin), None


def invariant_boxes(
    weights: RnnWeights,
    *,
    inflation: float = DEFAULT_INFLATION,
    max_iterations: int = 2000,
    max_width: float = 2.0,
    check_readout: bool = True,
) -> Boxes:
    """Grow the 20 boxes from the first step until they hold their own image under every digit.

    Boxes only grow, so with check_readout it stops as soon as the readout fails on one.
    """
    size = weights.hidden_size
    lo = np.full((2, 10, size), np.inf)
    hi = np.full((2, 10, size), -np.inf)
    zero = np.zeros(size)
    lo[1], hi[1] = _step(weights, zero, zero, inflation)  # the first step: carry in 1, from h0

    margin: float | None = None
    for iteration in range(max_iterations + 1):
        if check_readout:
            margin, failure = _readout_failure(weights, lo, hi)
            if failure:
                return Boxes(lo, hi, iteration, margin, f"{failure} after {iteration} iterations")
        widths = np.where(lo <= hi, hi - lo, 0.0)  # (2, 10, H)
        carry, digit, unit = np.unravel_index(int(widths.argmax()), widths.shape)
        if widths[carry, digit, unit] > max_width:
            return Boxes(
                lo,
                hi,
                iteration,
                None,
                f"{_name(int(carry), int(digit))} escaped: unit {unit} spans "
                f"[{lo[carry, digit, unit]:.3g}, {hi[carry, digit, unit]:.3g}], wider than "
                f"{max_width:g}, after {iteration} iterations",
            )
        if iteration == max_iterations:
            break

        # Push every reached box through every next digit into box (carry out, next digit).
        new_lo, new_hi = lo.copy(), hi.copy()
        for c, d in zip(*np.nonzero(lo[..., 0] <= hi[..., 0]), strict=True):
            out = int(c == 1 and d == 9)
            image_lo, image_hi = _step(weights, lo[c, d], hi[c, d], inflation)
            new_lo[out] = np.minimum(new_lo[out], image_lo)
            new_hi[out] = np.maximum(new_hi[out], image_hi)
        if np.array_equal(new_lo, lo) and np.array_equal(new_hi, hi):
            return Boxes(lo, hi, iteration + 1, margin, None)
        # Overshoot what grew by `inflation`, so a contracting map reaches a box that holds
        # its own image in finitely many steps instead of approaching it forever.
        lo = np.where(new_lo < lo, new_lo - inflation, lo)
        hi = np.where(new_hi > hi, new_hi + inflation, hi)

    failure = f"the boxes still grew after {max_iterations} iterations: no fixed point found"
    return Boxes(lo, hi, max_iterations, None, failure)


def certify(
    weights: RnnWeights,
    *,
    inflation: float = DEFAULT_INFLATION,
    max_iterations: int = 2000,
    max_width: float = 2.0,
) -> Certificate:
    """Try to prove every output digit right at every length; say why not if it fails.

    Fails when a box reaches states where a wrong digit can win, when a box grows wider than
    max_width in some unit, or when the boxes still grow after max_iterations.
    """
    boxes = invariant_boxes(
        weights, inflation=inflation, max_iterations=max_iterations, max_width=max_width
    )
    if boxes.failure is not None:
        reason = boxes.failure
    else:
        reason = (
            f"the {BOXES} boxes map into themselves under every digit after {boxes.iterations} "
            f"iterations and on each the right digit's logit beats every other by at least "
            f"{boxes.margin:.4g} (float32 rounding and a {inflation:g} tanh error per step "
            "included): every digit of every input is right"
        )
    return Certificate(
        certified=boxes.failure is None,
        method=METHOD,
        margin=_card_margin(boxes.margin),
        iterations=boxes.iterations,
        boxes=BOXES,
        reason=reason,
    )


def _card_margin(margin: float | None) -> float | None:
    """The margin as the card records it: rounded down to 1e-6.

    Rounding down keeps it a true lower bound, and drops the last bits, which depend on which
    BLAS kernel numpy picks on this processor, so a retrain elsewhere writes the same card.
    """
    return None if margin is None else math.floor(margin * MARGIN_STEPS) / MARGIN_STEPS


def certify_onnx(
    path: str | Path | onnx.ModelProto,
    *,
    inflation: float = DEFAULT_INFLATION,
    max_iterations: int = 2000,
    max_width: float = 2.0,
) -> Certificate:
    """certify(weights_from_onnx(path)); a graph the boxes do not cover gets certified=False."""
    try:
        weights = weights_from_onnx(path)
    except UnsupportedModelError as error:
        return Certificate(
            certified=False, method=METHOD, margin=None, iterations=0, boxes=0, reason=str(error)
        )
    return certify(weights, inflation=inflation, max_iterations=max_iterations, max_width=max_width)
