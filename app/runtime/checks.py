"""What the registry checks of each card before it serves the model: believe none of it unchecked.

For each card the service checks, on the bytes it actually loaded:
- the files: regular files under a size cap (app.runtime.files), the .onnx named by the card
  beside it;
- the sha256 of the .onnx against the card;
- that the file is, node for node, the graph training exports (core.canonical), so the graph
  that runs is the one whose weights the proof reads, and that the card's architecture,
  parameter count and opset are the file's (a card figure out of range fails its validation);
- that onnxruntime loads it and it keeps the model contract (int64 [b, t] -> float32 [b, t, 10]);
- the card's proof: the certificate (core.certify) is re-run on the loaded weights, with the
  card's settings, and must prove at least the reliable carry length the card claims; the
  tanh error it allows must cover the error of the onnxruntime running here (measured once
  at start through the RNN kernel, core.activation);
- the card's decided carry length, if it has one: its certificate file is checked on the
  loaded weights (core.decide, one pass, no search) and its refuting input must come out wrong
  on the loaded graph; the served card's reliable carry length is the larger proved K;
- answers (the warm-up): every number "t d 9..9" with up to 12 nines (a 2-digit tail t, any
  d in 0-8) and long runs of nines up to the proved length. Every one the card claims right
  (proved, or a run of nines its scan found no failure for) must come out right.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any, Literal

import numpy as np
import onnxruntime as ort
from threadpoolctl import threadpool_limits

from app import process
from app.runtime.files import UnreadableFileError, read_capped
from app.runtime.models import DecisionCheck, ModelLoadError
from app.settings import WalkedCertificates
from core.activation import measured_error
from core.canonical import check_canonical
from core.card import ModelCard
from core.certificate import cell_of
from core.certify import prove_carry
from core.codec import add_one, add_one_digits, carry_run, decode, encode_batch
from core.copying import CertificateError, Invariant
from core.decide import check as check_certificate
from core.dynamics import carry_attractor
from core.onnx_strict import NotCanonicalError
from core.weights import RnnWeights, UnsupportedModelError, recurrent_weights_from_onnx

WARM_NINES = 12  # the warm-up's runs of nines: every k up to this, each d and 2-digit tail
LONG_NINES = (50, 200, 1000)  # and these


def first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def read_file(path: Path, cap: int, setting: str, what: str) -> bytes:
    try:
        return read_capped(path, cap, setting)
    except FileNotFoundError:
        raise ModelLoadError(path, f"missing: {what}") from None
    except OSError as exc:  # UnreadableFileError included: its reason is its message
        reason = str(exc) if isinstance(exc, UnreadableFileError) else exc.strerror
        raise ModelLoadError(path, reason or "cannot read it") from None


def check_graph(card: ModelCard, onnx_path: Path, blob: bytes) -> None:
    """Serve only the graph the proof reads: the exporter's, node for node (core.canonical),
    and a card whose architecture, parameter count, opset and tensor names are the file's."""
    try:
        facts = check_canonical(blob)
    except NotCanonicalError as exc:
        raise ModelLoadError(onnx_path, f"not the graph training exports: {exc}") from None
    architecture = card.architecture
    for field_name, claimed, found in [
        ("architecture.cell", architecture.cell, facts.cell),
        ("architecture.nonlinearity", architecture.nonlinearity, facts.nonlinearity),
        ("architecture.hidden_size", architecture.hidden_size, facts.hidden_size),
        ("architecture.layers", architecture.layers, facts.layers),
        ("architecture.parameters", architecture.parameters, facts.parameters),
        ("frameworks.opset", card.frameworks.opset, facts.opset),
        ("input_name", card.input_name, "digits"),
        ("output_name", card.output_name, "probabilities"),
    ]:
        if claimed != found:
            raise ModelLoadError(
                onnx_path, f"the card's {field_name} is {claimed!r}, but the file's is {found!r}"
            )


def check_contract(card: ModelCard, onnx_path: Path, session: Any) -> None:
    """int64 [b, t] digits -> float32 [b, t, 10] probabilities."""
    probe = encode_batch(["0123456789", "9"])  # [2, 11]
    try:
        (probs,) = session.run([card.output_name], {card.input_name: probe})
    except Exception as exc:  # wrong input/output names or dtypes surface here
        raise ModelLoadError(onnx_path, f"breaks the model contract: {first_line(exc)}") from None
    expected = (*probe.shape, 10)
    if probs.shape != expected or probs.dtype != np.float32:
        raise ModelLoadError(
            onnx_path,
            f"breaks the model contract: probabilities are {probs.dtype} {list(probs.shape)}, "
            f"expected float32 {list(expected)}",
        )
    if not np.allclose(probs.sum(axis=-1), 1.0, atol=1e-3):
        raise ModelLoadError(onnx_path, "breaks the model contract: outputs are not probabilities")


class ActivationErrors:
    """Each recurrent op's largest activation error on the onnxruntime here: measured through
    that op's own kernels (core.activation) the first time a model of it claims a proof."""

    def __init__(self) -> None:
        self._by_op: dict[str, float] = {}

    def of(self, op: str) -> float:
        if op not in self._by_op:
            self._by_op[op] = measured_error(op)
        return self._by_op[op]


@dataclass(frozen=True)
class ProofCheck:
    """The card's proof, re-run on the loaded weights."""

    proved: int | Literal["unbounded"]  # reached: at least the card's claim
    margin: float | None
    seconds: float
    activation_error: float | None  # measured here; None when nothing is claimed


def recheck_proof(
    card: ModelCard, onnx_path: Path, blob: bytes, errors: ActivationErrors
) -> ProofCheck:
    """Re-run the card's proof on the loaded weights, after checking that the tanh and sigmoid
    error it allows covers this onnxruntime's kernels for the model's op."""
    claimed = card.metrics.reliable_carry_length
    certificate = card.metrics.certificate
    if claimed != certificate.proved_carry_length:
        raise ModelLoadError(
            onnx_path,
            f"the card's reliable_carry_length ({claimed}) is not its certificate's "
            f"({certificate.proved_carry_length})",
        )
    if claimed == -1:
        return ProofCheck(-1, None, 0.0, None)  # nothing claimed, nothing to confirm
    start = perf_counter()
    try:
        weights = recurrent_weights_from_onnx(blob)
    except UnsupportedModelError as exc:
        raise ModelLoadError(onnx_path, f"the card claims a proof, but {exc}") from None
    error = errors.of(weights.OP)
    if error > certificate.tanh_error_bound:
        raise ModelLoadError(
            onnx_path,
            f"the proof allows each tanh and sigmoid an error of "
            f"{certificate.tanh_error_bound:g}, but this onnxruntime's ({ort.__version__}) "
            f"{weights.OP} kernels are off by {error:.3g}: the proof does not hold here",
        )
    cell = cell_of(weights, certificate.tanh_error_bound)
    limit = certificate.search_limit if claimed == "unbounded" else int(claimed)
    proof = prove_carry(
        cell,
        limit,
        key_digits=certificate.key_digits,
        transient=certificate.transient_steps,
    )
    proved: int | Literal["unbounded"] = "unbounded" if proof.reliable is None else proof.reliable
    confirmed = proved == "unbounded" or (claimed != "unbounded" and int(proved) >= int(claimed))
    if not confirmed:
        raise ModelLoadError(
            onnx_path,
            f"the card claims a proved reliable carry length of {claimed}, but the proof re-run "
            f"on these weights reaches only {proved}: {proof.reason[:160]}",
        )
    return ProofCheck(proved, proof.margin, perf_counter() - start, error)


CERTIFICATE_BYTES = 64 << 20  # a certificate is a few hundred KB
WALKED_SKIPPED = "walked certificate not checked: COUNTER_WALKED_CERTIFICATES=skip"


def check_decision(
    card: ModelCard,
    onnx_path: Path,
    blob: bytes,
    session: Any,
    errors: ActivationErrors,
    walked: WalkedCertificates = "check",
) -> DecisionCheck | None:
    """Check the card's decision: its certificate file (sha256, then core.decide's one-pass
    check on the loaded weights, under an activation error this onnxruntime keeps), and its
    refuting input, run on the loaded graph, must come out wrong.

    walked="skip" (COUNTER_WALKED_CERTIFICATES): a walked certificate (steps > 1) is not
    checked, and the decision is served as proving nothing (DecisionCheck.result "skipped")."""
    decision = card.metrics.decision
    if decision is None:
        return None
    proved: int | Literal["unbounded"] = -1
    seconds = 0.0
    result: Literal["checked", "skipped"] = "checked"
    reason: str | None = None
    if decision.certificate_file is not None:
        name = decision.certificate_file
        where = onnx_path.parent / name
        if Path(name).name != name or name in ("", ".", ".."):
            raise ModelLoadError(where, "the card's certificate_file must be a file name beside it")
        blob_cert = read_file(where, CERTIFICATE_BYTES, "a certificate's size", "the card names it")
        if hashlib.sha256(blob_cert).hexdigest() != decision.certificate_sha256:
            raise ModelLoadError(where, "sha256 differs from the card's: the certificate changed")
        start = perf_counter()
        try:
            invariant = Invariant.from_bytes(blob_cert)
            if invariant.steps > 1 and walked == "skip":
                result, reason = "skipped", WALKED_SKIPPED
            else:
                proved = _check_invariant(invariant, blob, decision.tanh_error_bound, errors)
        except (CertificateError, UnsupportedModelError) as exc:
            raise ModelLoadError(where, f"the certificate does not check: {exc}") from None
        seconds = perf_counter() - start
    if result == "checked" and proved != decision.proved_carry_length:
        raise ModelLoadError(
            onnx_path,
            f"the card's decided carry length is {decision.proved_carry_length}, its "
            f"certificate proves {proved}",
        )
    refuted = None
    failure = decision.refutation
    if failure is not None:
        (probs,) = session.run(
            [card.output_name], {card.input_name: encode_batch([failure.example])}
        )
        got = decode(np.asarray(probs).argmax(axis=-1)[0])
        if (
            got == add_one(failure.example)
            or proved == "unbounded"
            or carry_run(failure.example) <= proved
        ):
            raise ModelLoadError(
                onnx_path,
                f"the card's refuting input {failure.example} (run "
                f"{carry_run(failure.example)}) does not refute: this graph answers {got}, "
                f"the card says {failure.got}",
            )
        refuted = f"{failure.example} + 1 gave {got}"
    return DecisionCheck(result, proved, round(seconds, 4), refuted, reason)


def _check_invariant(
    invariant: Invariant, blob: bytes, tanh_error: float, errors: ActivationErrors
) -> int | Literal["unbounded"]:
    """The K a certificate proves on the loaded weights (core.decide.check, one pass)."""
    weights = recurrent_weights_from_onnx(blob)
    if not isinstance(weights, RnnWeights):
        raise CertificateError(f"it covers tanh RNNs; this graph is a {weights.OP}")
    error = errors.of(weights.OP)
    if error > tanh_error:
        raise CertificateError(
            f"it allows each tanh an error of {tanh_error:g}; this "
            f"onnxruntime's ({ort.__version__}) is off by {error:.3g}"
        )
    # One BLAS thread: the walk is many small products, which a second thread only slows
    # (twice the CPU for about the same wall time), and it must not take the serving core.
    with threadpool_limits(limits=1, user_api="blas"), process.heaps_kept():
        return check_certificate(weights, invariant, tanh_error).proved


def served_card(card: ModelCard, decision: DecisionCheck | None) -> ModelCard:
    """The card as served: its reliable carry length raised to the decided K when the checked
    certificate proves more than the card's box proof; a decision whose certificate was not
    checked is served as proving nothing, with the reason."""
    if decision is not None and decision.result == "skipped" and card.metrics.decision:
        unchecked = card.metrics.decision.model_copy(
            update={"proved_carry_length": -1, "reason": decision.reason}
        )
        card = card.model_copy(
            update={"metrics": card.metrics.model_copy(update={"decision": unchecked})}
        )
    claimed = card.metrics.reliable_carry_length
    decided = None if decision is None else decision.proved_carry_length
    if decided is None or claimed == "unbounded":
        return card
    if decided != "unbounded" and decided <= claimed:
        return card
    metrics = card.metrics.model_copy(update={"reliable_carry_length": decided})
    return card.model_copy(update={"metrics": metrics})


def recheck_attractor(card: ModelCard, onnx_path: Path, blob: bytes) -> bool | None:
    """Re-derive the card's carry_attractor from the loaded weights; refuse a card it
    contradicts. None when the card makes no such claim."""
    if card.dynamics is None:
        return None
    try:
        weights = recurrent_weights_from_onnx(blob)
    except UnsupportedModelError as exc:
        raise ModelLoadError(onnx_path, f"the card claims carry dynamics, but {exc}") from None
    found = carry_attractor(weights)
    if found != card.dynamics.carry_attractor:
        raise ModelLoadError(
            onnx_path,
            f"the card says carry_attractor is {card.dynamics.carry_attractor}, but the loaded "
            f"weights give {found} (core.dynamics)",
        )
    return found


def _claimed_right(card: ModelCard, number: str) -> bool:
    """Whether the card says this answer is right: proved, or (for "t d 9..9" with a tail of
    at most the scan's digits) a run its scan checked and found no failure for."""
    run = carry_run(number)
    if card.proves(run):
        return True
    scan = card.metrics.carry_scan
    short_tail = len(number) - run - 1 <= scan.tail_digits
    failing = any(first <= run <= last for first, last in scan.failing_runs)
    return short_tail and run <= scan.scanned_up_to and not failing


def warm_up_numbers(card: ModelCard) -> list[str]:
    """What the warm-up asks: every "t d 9^k" for k <= WARM_NINES, d in 0-8, t of 2 digits,
    and a few long runs of nines (the card claims them right if its proof or its scan covers
    them, and the warm-up holds it to that)."""
    numbers = [
        f"{t:02d}{d}" + "9" * k for k in range(WARM_NINES + 1) for d in range(9) for t in range(100)
    ]
    for k in LONG_NINES:
        numbers += ["9" * k, "1" + "9" * k, "8" + "9" * k]
    return numbers


def warm_up(card: ModelCard, onnx_path: Path, session: Any) -> int:
    """Answer the warm-up numbers; any the card claims right must be. Returns how many."""
    numbers = warm_up_numbers(card)
    wrong: list[tuple[str, str]] = []
    by_length: dict[int, list[str]] = {}
    for number in numbers:  # one run per length: no padding
        by_length.setdefault(len(number), []).append(number)
    for chunk in by_length.values():
        digits = encode_batch(chunk)
        (probs,) = session.run([card.output_name], {card.input_name: digits})
        chosen = np.asarray(probs).argmax(axis=-1)
        # the answer is right iff every digit is (encode leaves the top step room for a carry)
        for row in np.flatnonzero((chosen != add_one_digits(digits)).any(axis=1)):
            number = chunk[row]
            if _claimed_right(card, number):
                wrong.append((number, decode(chosen[row])))
    if wrong:
        number, got = wrong[0]
        raise ModelLoadError(
            onnx_path,
            f"the warm-up got {len(wrong)} answer(s) wrong that the card claims right, e.g. "
            f"{number} + 1 gave {got}, not {add_one(number)}",
        )
    return len(numbers)
