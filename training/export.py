"""Export: the ONNX graph, its measurements, the model card and the plots, into models/.

`export(trained, out)` writes `<out>.onnx` (training.onnx_graph), measures that file in
onnxruntime (accuracy, accuracy by length, the carry scan) and certifies its weights, draws
`<out>.png` (training.plot), and writes `<out>.json` as an `core.card.ModelCard`. Every metric
on the card is of the exported file.
"""

import hashlib
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import numpy as np
import onnx
import onnxruntime as ort
import torch

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
from training import evaluate
from training.carry_scan import CarryEngine, OnnxCarryEngine, scan_carries
from training.data import DataSpec, Split
from training.model import Counter, ModelConfig, TorchCarryEngine, parameter_count
from training.onnx_graph import OPSET, export_onnx
from training.plot import plot
from training.train import Optimizer, RecipeName, Trained
from training.train import Recipe as TrainRecipe

VERSION = "2.0.0"


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
        gate_limit=recipe.model.gate_limit,
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
            gate_limit=record.gate_limit,
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
