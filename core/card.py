"""The model card: what the export step measured and wrote, and what the service shows and trusts.

One schema, written by `training.export` as `models/<name>.json` and read by `app.runtime.registry`.
The service's flags come from these measurements, so they are known before any answer is.
"""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError


class _Card(BaseModel):
    # every figure finite: a NaN bound would pass every comparison the service makes with it
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Frameworks(_Card):
    """Versions of what produced the file (for reproducing it) and the ONNX opset."""

    python: str
    torch: str
    onnx: str
    onnxruntime: str
    opset: int
    numpy: str = Field(default="", description="the proof's float64 arithmetic; empty on old cards")


class Architecture(_Card):
    """The network: a recurrent cell over one-hot digits plus a linear readout to 10 classes."""

    cell: Literal["rnn", "lstm", "gru"]
    nonlinearity: Literal["tanh", "relu"] | None = Field(description="None for LSTM/GRU")
    hidden_size: int
    layers: int
    parameters: int


class Kernels(_Card):
    """Which CPU kernels trained the model. A retrain gives the same bytes only on the same
    kernels and thread count: 'portable' pins them (see training.kernels), 'native' lets torch
    pick the fastest for the processor."""

    mode: Literal["portable", "native"]
    aten_capability: str = Field(description="torch's vectorised kernels: DEFAULT, AVX2, AVX512")
    blas: str = Field(description="the BLAS under matmul, and its code path")
    machine: str = Field(description="the processor architecture, e.g. x86_64")
    threads: int
    onednn: str = Field(
        default="",
        description="oneDNN (torch's LSTM and some matmuls): 'off' in portable mode, else its "
        "ISA cap; empty on cards written before it was recorded",
    )
    optimizer_step: str = Field(
        default="",
        description="the optimizer's kernel: 'fused' (ATen's one-pass kernel, plain IEEE "
        "arithmetic) or 'foreach' (square roots from MKL's vector math, which rounds "
        "differently on Intel and AMD); empty on cards written before it was recorded",
    )
    numpy_simd: str = Field(
        default="",
        description="numpy's SIMD dispatch (the CPU and NPY_DISABLE_CPU_FEATURES choose it): "
        "it moves the proof's float64 bounds in their last bits",
    )


class Recipe(_Card):
    """How the model was trained: enough to retrain it and get the same card metrics."""

    name: str = Field(description="'post' (the blog's recipe) or 'robust' (carry-rich, noisy)")
    train_size: int
    val_size: int
    min_digits: int
    max_digits: int
    carry_rich_share: float = Field(description="share of examples ending in a run of nines")
    max_carry_run: int = Field(description="longest run of trailing nines in the data")
    inner_nines_share: float = Field(
        default=0.0,
        description="share of examples with a run of nines inside (copied, not carried)",
    )
    optimizer: str
    learning_rate: float
    batch_size: int
    stop: Literal["perfect", "certified"] = Field(
        description="'perfect': stop at the first epoch with 100% validation accuracy (the "
        "post's); 'certified': once validation is 100%, run the certificate after each epoch "
        "and stop when it proves every carry; both within max_epochs"
    )
    min_epochs: int = Field(description="epochs run before stopping is considered")
    max_epochs: int = Field(description="the bound: training stops here, proved or not")
    epochs_run: int
    hidden_noise_std: float = Field(description="Gaussian noise on hidden pre-activations")
    state_noise_std: float = Field(
        default=0.0, description="Gaussian noise on the state after every step (h and c)"
    )
    cell_state_penalty: float = Field(
        default=0.0, description="LSTM: weight of the mean squared cell state in the loss"
    )
    gate_limit: float | None = Field(
        default=None,
        description="GRU update-gate or LSTM forget-gate pre-activations past it pay their "
        "excess squared in the loss; null: no limit",
    )
    seed: int
    kernels: Kernels
    wall_seconds: float


class LengthAccuracy(_Card):
    """Exact whole-number match on random numbers of one length (first digit non-zero)."""

    length: int
    samples: int
    correct: int
    accuracy: float


class CarryFailure(_Card):
    """A carry the scan got wrong: k trailing nines, the digit after them, and the whole input."""

    nines: int
    next_digit: int | None = Field(description="None: wrong while reading the nines themselves")
    example: str = Field(description="the input that failed, e.g. 1099999999")
    expected: str
    got: str


class CarryScan(_Card):
    """The exact carry scan: an empirical check of every case up to a bound, not a proof.

    Every run of k <= scanned_up_to nines, then every digit d in 0-8, then every tail of
    `tail_digits` digits: the first k + 1 + tail_digits output digits must be right.
    """

    engine: str
    scanned_up_to: int
    tail_digits: int
    cases: int = Field(description="inputs checked")
    longest_exact_run: int = Field(
        description="largest K with every case of k <= K nines right in the scan (-1: k = 0 "
        "fails); empirical: reliable_carry_length is the proved figure"
    )
    failing_runs: list[tuple[int, int]] = Field(
        description="every failing k up to scanned_up_to, as [first, last] ranges; failures "
        "need not be monotone in k"
    )
    first_failure: CarryFailure | None


class Certificate(_Card):
    """The proof of the reliable carry length (core.certify), and what it assumes."""

    method: str
    proved_carry_length: int | Literal["unbounded"] = Field(
        description="every input whose trailing run of nines is at most this is proved right "
        "at every length; -1: nothing proved"
    )
    certified: bool = Field(description="true when every carry length is proved (unbounded)")
    margin: float | None = Field(
        description="smallest lower bound of the right digit's logit gap over every box"
    )
    iterations: int
    boxes: int
    key_digits: int = Field(description="copying boxes are keyed by this many last digits")
    transient_steps: int = Field(description="copying steps kept in boxes of their own")
    search_limit: int = Field(description="the largest finite K tried")
    tanh_error_bound: float = Field(
        description="the absolute error of every deployed tanh (and a GRU's or LSTM's sigmoid) "
        "the proof allows per step; the service measures its onnxruntime's against it at start"
    )
    reason: str = Field(description="why it passed, or the box where it failed")


class Refutation(_Card):
    """An input the served model answers wrong: the other half of a decided K."""

    nines: int = Field(description="its trailing run of nines")
    example: str
    expected: str
    got: str


class Decision(_Card):
    """The decided reliable carry length (core.decide, found by training.decide): a proof of
    K in a certificate file beside the card, which the service checks at load, and an input of
    a longer run that the model answers wrong, which the service runs at load."""

    method: str
    proved_carry_length: int | Literal["unbounded"] = Field(
        description="every input whose trailing run of nines is at most this is proved right "
        "at every length; 'unbounded': every input (a carrying set, core.carrying); -1: nothing "
        "proved"
    )
    refutation: Refutation | None = Field(
        description="an input answered wrong: of run proved + 1 when K is decided exactly, "
        "else of the shortest run found failing (K lies between)"
    )
    certificate_file: str | None = Field(description="the certificate beside the card")
    certificate_sha256: str | None
    key_digits: int = Field(description="copying sets are keyed by this many last digits")
    tanh_error_bound: float = Field(description="each deployed tanh's error the proof allows")
    margin: float | None = Field(description="least lower bound of the right digit's logit gap")
    search_seconds: float
    reason: str = Field(description="why the proof stops where it does")

    @property
    def exact(self) -> bool:
        """Whether K is decided: proved, and refuted one nine later."""
        proved = self.proved_carry_length
        return (
            proved != "unbounded"
            and self.refutation is not None
            and self.refutation.nines == proved + 1
        )


class Metrics(_Card):
    """What the evaluation measured on the exported ONNX model."""

    train_accuracy: float
    val_accuracy: float
    accuracy_by_length: list[LengthAccuracy]
    tested_length: int = Field(
        description="longest tested length such that every tested length up to it was exact"
    )
    reliable_carry_length: int | Literal["unbounded"] = Field(
        description="proved: every input whose trailing run of nines is at most this gets its "
        "whole answer right at every length; 'unbounded' when proved for every run; -1 when "
        "nothing is proved"
    )
    certificate: Certificate
    carry_scan: CarryScan
    decision: Decision | None = Field(
        default=None, description="the decided carry length (absent on older cards)"
    )


class CarryDynamics(_Card):
    """Why the carry lasts or fades (core.dynamics, `python -m training explain`): optional,
    so cards written before it still parse. The service re-derives carry_attractor."""

    carry_attractor: bool = Field(
        description="true when a stable fixed point of the map 'read a 9' reads out the carry "
        "and the carry chain settles on it: the carry lasts for ever; false when the chain is "
        "a transient that leaves the carry"
    )
    predicted_exact_run: int | Literal["unbounded"] = Field(
        description="the longest run of nines the chain keeps the carry through (float64)"
    )
    lost_at: int | None = Field(description="the first run of nines whose carry is lost")
    figure: str | None = Field(description="the figure among the card's plots, if drawn")


SCHEMA_VERSION: Literal[2] = 2

# The proof's settings a card may ask the service to re-run it with: each bounds the work at
# load (keys are 10 ** key_digits; the search runs up to search_limit), so a card cannot stall
# the start. Generous beside what training writes (core.certify's KEY_DIGITS, DEFAULT_LIMIT).
MAX_KEY_DIGITS = 4
MAX_TRANSIENT_STEPS = 1000
MAX_SEARCH_LIMIT = 100_000


def _out_of_range(card: "ModelCard") -> str | None:
    """The first card figure outside the range it can take, said in words; None if all fit."""
    metrics, certificate, scan = card.metrics, card.metrics.certificate, card.metrics.carry_scan
    at_least: list[tuple[str, int | float, int]] = [
        ("architecture.hidden_size", card.architecture.hidden_size, 1),
        ("architecture.layers", card.architecture.layers, 1),
        ("architecture.parameters", card.architecture.parameters, 1),
        ("metrics.tested_length", metrics.tested_length, 0),
        ("metrics.certificate.key_digits", certificate.key_digits, 1),
        ("metrics.certificate.transient_steps", certificate.transient_steps, 0),
        ("metrics.certificate.search_limit", certificate.search_limit, 0),
        ("metrics.certificate.tanh_error_bound", certificate.tanh_error_bound, 0),
        ("metrics.carry_scan.scanned_up_to", scan.scanned_up_to, 0),
        ("metrics.carry_scan.tail_digits", scan.tail_digits, 0),
        ("metrics.carry_scan.longest_exact_run", scan.longest_exact_run, -1),
    ]
    for name, length in [
        ("metrics.reliable_carry_length", metrics.reliable_carry_length),
        ("metrics.certificate.proved_carry_length", certificate.proved_carry_length),
    ]:
        if length != "unbounded":
            at_least.append((name, length, -1))
    for name, value, least in at_least:
        if value < least:
            return f"{name} is {value}; it must be at least {least}"
    for name, value, most in [
        ("metrics.certificate.key_digits", certificate.key_digits, MAX_KEY_DIGITS),
        ("metrics.certificate.transient_steps", certificate.transient_steps, MAX_TRANSIENT_STEPS),
        ("metrics.certificate.search_limit", certificate.search_limit, MAX_SEARCH_LIMIT),
    ]:
        if value > most:
            return f"{name} is {value}; the service re-runs proofs with at most {most}"
    for first, last in scan.failing_runs:
        if not 0 <= first <= last:
            return f"metrics.carry_scan.failing_runs has [{first}, {last}], not 0 <= first <= last"
    return None


class ModelCard(_Card):
    """Everything known about one exported model: identity, provenance, and measurements."""

    schema_version: Literal[2] = Field(
        description="2: reliable_carry_length is proved; the scan is carry_scan"
    )
    name: str
    version: str
    created: datetime
    onnx_file: str
    sha256: str
    input_name: str = "digits"
    output_name: str = "probabilities"
    frameworks: Frameworks
    architecture: Architecture
    recipe: Recipe
    metrics: Metrics
    plots: list[str] = Field(default_factory=list)
    notes: str = ""
    dynamics: CarryDynamics | None = None

    @model_validator(mode="after")
    def figures_in_range(self) -> "ModelCard":
        """A figure out of its range is a validation error naming it, not a crash later."""
        fault = _out_of_range(self)
        if fault is not None:
            raise PydanticCustomError("out_of_range", fault)
        return self

    @property
    def reliable_carry(self) -> int | None:
        """The largest proved run of trailing nines; None when proved for every run."""
        value = self.metrics.reliable_carry_length
        return None if value == "unbounded" else value

    def proves(self, carry_run: int) -> bool:
        """Whether the certificate covers an input with this many trailing nines."""
        reliable = self.reliable_carry
        return reliable is None or carry_run <= reliable
