"""The model card: what the export step measured and wrote, and what the service shows and trusts.

One schema, written by `training.export` as `models/<name>.json` and read by `app.registry`.
The service's flags come from these measurements, so they are known before any answer is.
"""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Card(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Frameworks(_Card):
    """Versions of what produced the file (for reproducing it) and the ONNX opset."""

    python: str
    torch: str
    onnx: str
    onnxruntime: str
    opset: int


class Architecture(_Card):
    """The network: a recurrent cell over one-hot digits plus a linear readout to 10 classes."""

    cell: Literal["rnn", "lstm", "gru"]
    nonlinearity: Literal["tanh", "relu"] | None = Field(description="None for LSTM/GRU")
    hidden_size: int
    layers: int
    parameters: int


class Recipe(_Card):
    """How the model was trained: enough to retrain it and get the same card metrics."""

    name: str = Field(description="'post' (the blog's recipe) or 'robust' (carry-rich, noisy)")
    train_size: int
    val_size: int
    min_digits: int
    max_digits: int
    carry_rich_share: float = Field(description="share of examples ending in a run of nines")
    max_carry_run: int = Field(description="longest run of trailing nines in the data")
    optimizer: str
    learning_rate: float
    batch_size: int
    max_epochs: int
    epochs_run: int
    hidden_noise_std: float = Field(description="Gaussian noise on hidden pre-activations")
    seed: int
    threads: int
    wall_seconds: float


class LengthAccuracy(_Card):
    """Exact whole-number match on random numbers of one length (first digit non-zero)."""

    length: int
    samples: int
    correct: int
    accuracy: float


class CarryFailure(_Card):
    """The first carry the scan got wrong: k trailing nines, then digit d (None: nines alone)."""

    nines: int
    next_digit: int | None


class Certificate(_Card):
    """The outcome of the interval-arithmetic proof that the carry is right for every length."""

    certified: bool
    method: str
    margin: float | None = Field(description="smallest logit gap of the right digit over any box")
    iterations: int
    boxes: int
    reason: str = Field(description="why it passed, or what failed")


class Metrics(_Card):
    """What the evaluation measured on the exported ONNX model."""

    train_accuracy: float
    val_accuracy: float
    accuracy_by_length: list[LengthAccuracy]
    tested_length: int = Field(
        description="longest tested length such that every tested length up to it was exact"
    )
    reliable_carry_length: int | Literal["unbounded"] = Field(
        description="largest K with every carry of k <= K nines exact; 'unbounded' when certified"
    )
    carry_scanned_up_to: int = Field(description="how far the exact carry scan went")
    carry_first_failure: CarryFailure | None
    carry_scan_engine: str
    carry_certified: bool
    certificate: Certificate


class ModelCard(_Card):
    """Everything known about one exported model: identity, provenance, and measurements."""

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

    @property
    def reliable_carry(self) -> int | None:
        """The largest trusted run of trailing nines; None when certified unbounded."""
        value = self.metrics.reliable_carry_length
        return None if value == "unbounded" else value
