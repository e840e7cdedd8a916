"""Export: the ONNX graph, its measurements, the model card and the plots, into models/.

`export(trained, out)` writes `<out>.onnx`, measures that file in onnxruntime (accuracy,
accuracy by length, the carry scan) and certifies its weights, draws `<out>.png`, and writes
`<out>.json` as an `core.card.ModelCard`. Every metric on the card is of the exported file.
"""

import hashlib
import platform
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import matplotlib
import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import torch
from torch import nn
from torch.jit._trace import TracerWarning

from core.card import (
    SCHEMA_VERSION,
    Architecture,
    CarryScan,
    Certificate,
    Frameworks,
    Metrics,
    ModelCard,
    Recipe,
)
from core.certificate import certify_onnx
from core.certify import DEFAULT_LIMIT
from core.weights import GruWeights, LstmWeights, Weights, recurrent_weights_from_onnx
from training import evaluate
from training.carry_scan import CarryEngine, OnnxCarryEngine, scan_carries
from training.data import DataSpec, Split
from training.model import Cell as CellName
from training.model import Counter, ModelConfig, Probabilities, TorchCarryEngine, parameter_count
from training.proof import onnx_rows
from training.train import Optimizer, RecipeName, Trained
from training.train import Recipe as TrainRecipe

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after matplotlib.use: no display needed

Array = npt.NDArray[np.float32]
OPSET = 17
VERSION = "2.0.0"
# Longest run of nines drawn in the plot's second panel.
PLOT_NINES = 200
# Okabe-Ito colours, told apart with any colour vision; lines also differ in style.
BLUE, ORANGE, VERMILLION, GREY = "#0072B2", "#E69F00", "#D55E00", "#999999"


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


def sha256(path: Path) -> str:
    """Hex digest of a file, as the card records it and the service verifies it."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def frameworks() -> Frameworks:
    """Versions of what produced the file."""
    return Frameworks(
        python=platform.python_version(),
        torch=torch.__version__,
        onnx=onnx.__version__,
        onnxruntime=ort.__version__,
        opset=OPSET,
        numpy=np.__version__,
    )


def architecture(counter: Counter) -> Architecture:
    config = counter.config
    return Architecture(
        cell=config.cell,
        nonlinearity=config.nonlinearity if config.cell == "rnn" else None,
        hidden_size=config.hidden_size,
        layers=1,
        parameters=parameter_count(counter),
    )


def recipe_record(trained: Trained) -> Recipe:
    recipe, data = trained.recipe, trained.recipe.data
    return Recipe(
        name=recipe.name,
        train_size=data.train_size,
        val_size=data.val_size,
        min_digits=data.min_digits,
        max_digits=data.max_digits,
        carry_rich_share=data.carry_rich_share,
        max_carry_run=data.max_carry_run,
        inner_nines_share=data.inner_nines_share,
        optimizer=recipe.optimizer,
        learning_rate=recipe.learning_rate,
        batch_size=recipe.batch_size,
        stop=recipe.stop,
        min_epochs=recipe.min_epochs,
        max_epochs=recipe.max_epochs,
        epochs_run=trained.epochs_run,
        hidden_noise_std=recipe.model.hidden_noise_std,
        state_noise_std=recipe.model.state_noise_std,
        cell_state_penalty=recipe.model.cell_state_penalty,
        seed=recipe.seed,
        kernels=trained.kernels,
        wall_seconds=round(trained.wall_seconds, 2),
    )


def carry_engine(model: onnx.ModelProto, counter: Counter | None) -> CarryEngine:
    """The exported graph in onnxruntime for RNN/GRU; the torch model for an LSTM.

    The ONNX LSTM op cannot resume from a given step's cell state (see carry_scan).
    """
    if counter is not None and counter.config.cell == "lstm":
        return TorchCarryEngine(counter)
    return OnnxCarryEngine(model)


class InconsistentMeasurementError(RuntimeError):
    """The certificate and the carry scan contradict each other: a bug in one of them."""


def _contradiction(proof: Certificate, scan: CarryScan) -> str | None:
    """A failure the scan found inside what the proof covers: a bug in one of them."""
    proved = proof.proved_carry_length
    covered = scan.scanned_up_to if proved == "unbounded" else min(proved, scan.scanned_up_to)
    inside = [run for run in scan.failing_runs if run[0] <= covered]
    if not inside:
        return None
    example = scan.first_failure.example if scan.first_failure else f"{inside[0][0]} nines"
    return (
        f"the certificate proves every run of up to {proved} nines, but the scan "
        f"({scan.engine}) found a wrong answer at {inside[0][0]} nines ({example}): one of "
        "core.certify and training.carry_scan is wrong; no card written"
    )


def measure(
    model: onnx.ModelProto,
    predict: evaluate.Predictor,
    split: Split,
    seed: int,
    engine: CarryEngine,
    scan_up_to: int,
    proof_limit: int = DEFAULT_LIMIT,
) -> Metrics:
    """Every metric of the card, on the exported graph in onnxruntime (see carry_engine).

    predict runs that graph (evaluate.ort_predictor(model)); passed in so a caller that also
    plots runs one session.
    """
    scan = scan_carries(engine, scan_up_to)
    proof = certify_onnx(model, limit=proof_limit)
    contradiction = _contradiction(proof, scan)
    if contradiction:
        raise InconsistentMeasurementError(contradiction)
    by_length = evaluate.accuracy_by_length(predict, seed=seed)
    return Metrics(
        train_accuracy=evaluate.exact_match(predict, split.train),
        val_accuracy=evaluate.exact_match(predict, split.val),
        accuracy_by_length=by_length,
        tested_length=evaluate.tested_length(by_length),
        reliable_carry_length=proof.proved_carry_length,
        certificate=proof,
        carry_scan=scan,
    )


def carry_probabilities(predict: evaluate.Predictor, up_to: int) -> tuple[Array, Array]:
    """The right digit's probability along runs of k = 0..up_to nines, worst case over d.

    Returns (while, end), each (up_to + 1,): `while[k]` the smallest P(0) on the k nines
    themselves, `end[k]` the smallest P(d + 1) where "k nines then d" ends the carry.
    """
    ks = np.arange(up_to + 1)
    rows = np.zeros((9 * ks.size, up_to + 2), dtype=np.int64)  # (9 (k, d) pairs, time)
    rows_k, rows_d = np.repeat(ks, 9), np.tile(np.arange(9), ks.size)
    rows[np.arange(up_to + 2)[None, :] < rows_k[:, None]] = 9
    rows[np.arange(rows_k.size), rows_k] = rows_d
    probs = predict(rows)  # (9 (k, d), time, 10)
    end = probs[np.arange(rows_k.size), rows_k, rows_d + 1].reshape(ks.size, 9).min(axis=1)
    nines = probs[-1, :up_to, 0]  # the longest row reads up_to nines first
    during = np.minimum.accumulate(np.concatenate([[1.0], nines]))  # (up_to + 1,)
    return during, end


def plot(path: Path, title: str, metrics: Metrics, predict: evaluate.Predictor) -> None:
    """Two panels: accuracy by length, and the right digit's probability along runs of nines."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    by_length, reliable = metrics.accuracy_by_length, metrics.reliable_carry_length
    places = np.arange(len(by_length))
    left.plot(places, [r.accuracy for r in by_length], "o-", color=BLUE)
    left.set_xticks(places, [f"{r.length:,}\n{r.samples}" for r in by_length], fontsize=7)
    left.set_ylim(-0.05, 1.08)
    left.set_xlabel("digits in the number (top) and numbers drawn (bottom)")
    left.set_ylabel("exact-match accuracy")
    left.set_title("Accuracy by length (random numbers)")
    left.grid(alpha=0.3)

    during, end = carry_probabilities(predict, PLOT_NINES)
    ks = np.arange(PLOT_NINES + 1)
    right.plot(ks, end, color=BLUE, label="P(d + 1) where the carry ends, worst d")
    right.plot(ks, during, color=ORANGE, ls="--", label="P(0) on the nines, worst so far")
    right.axhline(0.5, color=GREY, lw=0.6)
    failing = [k for first, last in metrics.carry_scan.failing_runs for k in range(first, last + 1)]
    failing = [k for k in failing if k <= PLOT_NINES]
    if failing:
        right.plot(failing, [0.0] * len(failing), "|", color=VERMILLION, ms=10, label="scan: wrong")
    if isinstance(reliable, int) and reliable < PLOT_NINES:
        right.axvline(reliable + 0.5, color=VERMILLION, ls=":", label=f"proved up to: {reliable}")
    right.set_ylim(-0.05, 1.05)
    right.set_xlabel("k trailing nines, then a digit d in 0-8")
    right.set_ylabel("probability of the right digit")
    right.set_title(f"Carrying through k nines (proved reliable carry length: {reliable})")
    right.legend(loc="center right", fontsize=8)
    right.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def carry_note(metrics: Metrics) -> str:
    """Plain sentences on what the carry can be trusted with: the proof, then the scan."""
    proved = metrics.reliable_carry_length
    if proved == "unbounded":
        return "Carry certified: every output digit is right for every input of every length."
    if proved >= 0:
        note = (
            f"Proved right, at every length, for every input ending in at most {proved} nines; "
            "longer runs are not proved."
        )
    else:
        note = "Nothing is proved: the certificate's boxes fail before any run of nines."
    scan = metrics.carry_scan
    failure = scan.first_failure
    if failure is None:
        return note + (
            f" The scan of every run of up to {scan.scanned_up_to:,} nines (each next digit, "
            f"every {scan.tail_digits}-digit tail) found no wrong answer."
        )
    return note + (
        f" The scan of every run of up to {scan.scanned_up_to:,} nines found wrong answers from "
        f"{failure.nines} nines on (e.g. {failure.example} + 1 gave {failure.got}, not "
        f"{failure.expected})."
    )


SCAN_UP_TO = 1000


def export(
    trained: Trained,
    out: Path,
    scan_up_to: int = SCAN_UP_TO,
    notes: str = "",
    proof_limit: int = DEFAULT_LIMIT,
) -> ModelCard:
    """Write <out>.onnx, <out>.png and <out>.json; return the card."""
    onnx_path, png_path, card_path = (out.with_suffix(s) for s in (".onnx", ".png", ".json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(trained.model, onnx_path)
    graph = onnx.load(str(onnx_path))  # loaded once, for every measurement below
    predict = evaluate.ort_predictor(graph)
    recipe = trained.recipe
    engine = carry_engine(graph, trained.model)
    metrics = measure(graph, predict, trained.split, recipe.seed, engine, scan_up_to, proof_limit)
    name = out.name
    title = (
        f"{name}: {recipe.model.cell} H{recipe.model.hidden_size}, "
        f"{recipe.name} recipe, seed {recipe.seed}"
    )
    plot(png_path, title, metrics, predict)
    card = ModelCard(
        schema_version=SCHEMA_VERSION,
        name=name,
        version=VERSION,
        created=datetime.now(UTC).replace(microsecond=0),
        onnx_file=onnx_path.name,
        sha256=sha256(onnx_path),
        frameworks=frameworks(),
        architecture=architecture(trained.model),
        recipe=recipe_record(trained),
        metrics=metrics,
        plots=[png_path.name],
        notes=notes or carry_note(metrics),
    )
    card_path.write_text(card.model_dump_json(indent=2) + "\n")
    return card


def recipe_from_card(card: ModelCard) -> TrainRecipe:
    """The training recipe a card records: retraining with it reproduces the card's metrics."""
    record, arch = card.recipe, card.architecture
    if record.name not in ("post", "robust") or record.optimizer not in ("adagrad", "adam"):
        raise ValueError(f"unknown recipe {record.name!r} / optimizer {record.optimizer!r}")
    return TrainRecipe(
        name=cast(RecipeName, record.name),
        data=DataSpec(
            train_size=record.train_size,
            val_size=record.val_size,
            min_digits=record.min_digits,
            max_digits=record.max_digits,
            carry_rich_share=record.carry_rich_share,
            max_carry_run=record.max_carry_run,
            inner_nines_share=record.inner_nines_share,
        ),
        model=ModelConfig(
            cell=arch.cell,
            hidden_size=arch.hidden_size,
            nonlinearity=arch.nonlinearity or "tanh",
            hidden_noise_std=record.hidden_noise_std,
            state_noise_std=record.state_noise_std,
            cell_state_penalty=record.cell_state_penalty,
        ),
        optimizer=cast(Optimizer, record.optimizer),
        learning_rate=record.learning_rate,
        batch_size=record.batch_size,
        max_epochs=record.max_epochs,
        stop=record.stop,
        min_epochs=record.min_epochs,
        seed=record.seed,
        threads=record.kernels.threads,
        kernels=record.kernels.mode,
    )
