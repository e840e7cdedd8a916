"""The carrying box that covers every run of nines, where reading a 9 contracts slowly: a GRU
unit whose update gate is near 1 on a 9 creeps to its limit over thousands of nines, and the
proof must still find a box that holds its own image (and refuse one where the creep ends in a
wrong answer)."""

from pathlib import Path

import numpy as np
import onnx

from core.certificate import cell_from_onnx, cell_of, prove_weights
from core.certify import DEFAULT_TANH_ERROR, TIGHT_TANH_ERROR, prove_carry
from core.session import open_session
from core.weights import GruWeights
from tests.core.test_gated import _deployed_step, _one_step
from tests.training.hand_counter import CARRY, SHUT, export_weights, hand_counter, hand_gru
from training.evaluate import exact_match, ort_predictor

LIMIT = 128  # runs of nines the proof may try one by one: far short of the creep's limit
TARGET = 0.5  # where the slow unit creeps to while nines are read
THRESHOLD = 0.3  # the spoiling unit's switch point on the slow unit


def slow_gru(keep: float, spoil: bool = False) -> GruWeights:
    """hand_gru()'s exact counter plus a slow unit S: while a carry comes in its update gate is
    `keep` and its candidate TARGET, so over a run of nines S creeps from 0 to TARGET like
    1 - keep^j; once the carry is spent it is -TARGET. Read by nothing, unless spoil: then a
    unit P switches on once S passes THRESHOLD while a carry is coming in, and adds 2A to
    digit 1's logit (as leaky_counter's P does), so long enough runs of nines answer 1 where
    0 is right."""
    rnn = hand_counter()
    gain, readout = rnn.w_hh[CARRY, CARRY], rnn.b_out[0]
    base = hand_gru(rnn)
    old = rnn.hidden_size
    size = old + (2 if spoil else 1)
    slow, switch = old, old + 1

    def blocks(matrix: np.ndarray, columns: int = 0) -> list[np.ndarray]:
        """The z, r, h blocks of a weight (3 old, ...), each with zero rows (and `columns`
        zero columns) for the new units."""
        pad = ((0, size - old),) if matrix.ndim == 1 else ((0, size - old), (0, columns))
        return [np.pad(block, pad) for block in np.split(matrix, 3)]

    w_z, w_r, w_n = blocks(base.w_ih)
    r_z, r_r, r_n = blocks(base.w_hh, size - old)
    b_z, b_r, b_n = blocks(base.b_ih)
    h_z, h_r, h_n = blocks(base.b_hh)
    b_z[old:], b_r[old:] = -SHUT, SHUT  # new units: update gate shut, reset gate open
    # S's gates read the carry unit (-1 while a carry comes in, +1 once it is spent, 0 before
    # the first digit): z = keep while carrying, 0 after (S resets at once to -TARGET), and
    # about 0 on the first digit, where n = 0, so S starts the run at 0.
    carrying, spent = np.log(keep / (1 - keep)), -SHUT
    b_z[slow], r_z[slow, CARRY] = (carrying + spent) / 2, (spent - carrying) / 2
    r_n[slow, CARRY] = -np.arctanh(TARGET)
    w_out = np.zeros((10, size))
    w_out[:, :old] = rnn.w_out
    b_out = rnn.b_out.copy()
    if spoil:
        r_n[switch, slow] = gain / (TARGET - THRESHOLD)
        r_n[switch, CARRY] = -2 * gain
        b_n[switch] = -gain * THRESHOLD / (TARGET - THRESHOLD) - 2 * gain
        w_out[1, switch] = 2 * readout
        b_out[1] += 2 * readout
    return GruWeights(
        w_ih=np.concatenate([w_z, w_r, w_n]),
        w_hh=np.concatenate([r_z, r_r, r_n]),
        b_ih=np.concatenate([b_z, b_r, b_n]),
        b_hh=np.concatenate([h_z, h_r, h_n]),
        w_out=w_out,
        b_out=b_out,
    )


def test_a_slowly_creeping_carry_is_proved_for_every_run_of_nines() -> None:
    """After LIMIT nines S is still far from its limit (1 - keep^128 = 1.3 %): joining the box
    with its image approaches the limit too slowly; the box that holds the way there closes."""
    proof = prove_carry(cell_of(slow_gru(keep=1 - 1e-4)), LIMIT)
    assert proof.unbounded, proof.reason
    assert proof.invariant is not None
    assert proof.invariant.closure is not None
    (lo, hi), _ = proof.invariant.closure
    slow = hand_counter().hidden_size
    assert lo[slow] <= TARGET <= hi[slow]  # the box reaches the creep's limit


def test_a_carry_slower_than_the_allowed_error_is_proved_under_the_tighter_allowance() -> None:
    """keep = 1 - 5e-6: the update gate within 1e-5 of 1. Under the default allowance the
    deployed gate may reach 1, where S stops contracting and the rounding of its update grows
    any box, so none holds its own image; under 2e-6 S contracts, and prove_weights keeps that
    proof with the allowance it holds under (which the card records and the service checks)."""
    weights = slow_gru(keep=1 - 5e-6)
    assert prove_carry(cell_of(weights, DEFAULT_TANH_ERROR), LIMIT).reliable == LIMIT
    proof, allowance = prove_weights(weights, LIMIT)
    assert proof.unbounded, proof.reason
    assert allowance == TIGHT_TANH_ERROR


def test_a_proof_keeps_the_loosest_allowance_that_proves_every_length() -> None:
    proof, allowance = prove_weights(slow_gru(keep=1 - 1e-4), LIMIT)
    assert proof.unbounded
    assert allowance == DEFAULT_TANH_ERROR


def test_deployed_states_in_the_closed_box_read_with_a_nine_stay_inside(tmp_path: Path) -> None:
    """The closed box's claim, against onnxruntime's float32 step: states sampled from the box
    (its corners included), read with a 9, land inside it again."""
    path = tmp_path / "slow.onnx"
    export_weights(slow_gru(keep=1 - 1e-4), str(path))
    proof = prove_carry(cell_from_onnx(path), LIMIT)
    assert proof.invariant is not None
    assert proof.invariant.closure is not None
    (lo, hi), _ = proof.invariant.closure
    exposed, size = _one_step(onnx.load(str(path)))
    session = open_session(exposed.SerializeToString())
    rng = np.random.default_rng(0)
    # the box's float32 corners, rounded inward, and float32 points inside it
    lo32, hi32 = lo.astype(np.float32), hi.astype(np.float32)
    lo32 = np.where(lo32 < lo, np.nextafter(lo32, np.float32(np.inf)), lo32)
    hi32 = np.where(hi32 > hi, np.nextafter(hi32, np.float32(-np.inf)), hi32)
    corners = np.where(rng.integers(0, 2, size=(500, size)) == 1, lo32, hi32)
    inside = rng.uniform(lo32, hi32, size=(2000, size)).astype(np.float32)
    points = np.concatenate([corners, np.clip(inside, lo32, hi32)])
    assert np.all(lo <= points)
    assert np.all(points <= hi)
    after = _deployed_step(session, size, False, points, np.full(len(points), 9))
    assert np.all(lo <= after)
    assert np.all(after <= hi)


def test_a_creep_that_ends_in_a_wrong_answer_is_not_proved_for_every_run(tmp_path: Path) -> None:
    """With keep = 0.999 S passes THRESHOLD after about 900 nines and the network answers 1
    where 0 is right: every box that holds its own image holds S's limit, where the readout
    fails, so the proof stops at its limit and never says 'unbounded'."""
    weights = slow_gru(keep=0.999, spoil=True)
    proof = prove_carry(cell_of(weights), 32)  # a closed box is sought after every nine
    assert proof.reliable == 32, proof.reason
    path = tmp_path / "spoiled.onnx"
    export_weights(weights, str(path))
    predict = ort_predictor(path)
    assert exact_match(predict, ["9" * 200, "7" + "9" * 250]) == 1.0
    assert exact_match(predict, ["9" * 1200]) == 0.0


def test_the_slow_unit_leaves_the_counter_exact(tmp_path: Path) -> None:
    """The fixture is a counter: the slow unit, read by nothing, changes no answer."""
    path = tmp_path / "slow.onnx"
    export_weights(slow_gru(keep=1 - 1e-4), str(path))
    numbers = ["9" * 2000, "1" + "9" * 700, "12", "8999", "4093", "9" * 30 + "5" + "9" * 40]
    assert exact_match(ort_predictor(path), numbers) == 1.0
