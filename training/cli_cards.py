"""`python -m training train`'s summary, `evaluate` and `retrain`: a model's card figures, and
each set beside the card's, re-measured from its file or retrained from its recipe."""

import tempfile
from dataclasses import replace
from pathlib import Path

import onnx

from core.card import CarryFailure, Metrics, ModelCard
from training import evaluate, export, kernels
from training.carry_scan import OnnxCarryEngine
from training.data import make_split
from training.train import train


def _proved(metrics: Metrics) -> str:
    value = metrics.reliable_carry_length
    return "nothing (-1)" if value == -1 else str(value)


def summary(card: ModelCard) -> str:
    """The card's headline figures, one per line."""
    m, r = card.metrics, card.recipe
    scan = m.carry_scan
    lines = [
        f"{card.name}: {card.architecture.cell} H{card.architecture.hidden_size}, "
        f"{r.name} recipe, seed {r.seed}, {r.epochs_run} epochs, {r.wall_seconds:.1f} s "
        f"({r.kernels.mode} kernels: ATen {r.kernels.aten_capability}, {r.kernels.blas})",
        f"  train accuracy {m.train_accuracy:.4f}, validation accuracy {m.val_accuracy:.4f}",
        "  accuracy by length: "
        + ", ".join(f"{a.length}: {a.correct}/{a.samples}" for a in m.accuracy_by_length),
        f"  proved reliable carry length: {_proved(m)} (margin {m.certificate.margin})",
        f"  carry scan to {scan.scanned_up_to} nines with every {scan.tail_digits}-digit tail "
        f"in {scan.engine}: longest exact run {scan.longest_exact_run}, first failure "
        f"{_failure(scan.first_failure)}",
        f"  wrote {card.onnx_file}, {card.name}.json, " + ", ".join(card.plots),
    ]
    return "\n".join(lines)


def _failure(failure: CarryFailure | None) -> str:
    if failure is None:
        return "none"
    return f"{failure.example} + 1 gave {failure.got} ({failure.nines} nines)"


def _rows(old: Metrics, new: Metrics) -> list[tuple[str, object, object]]:
    """Every figure of two cards' metrics, side by side."""
    rows: list[tuple[str, object, object]] = [
        ("train_accuracy", old.train_accuracy, new.train_accuracy),
        ("val_accuracy", old.val_accuracy, new.val_accuracy),
    ]
    rows += [
        (f"accuracy at {a.length} digits", a.accuracy, b.accuracy)
        for a, b in zip(old.accuracy_by_length, new.accuracy_by_length, strict=True)
    ]
    old_scan, new_scan = old.carry_scan, new.carry_scan
    return [
        *rows,
        ("tested_length", old.tested_length, new.tested_length),
        ("reliable_carry_length (proved)", old.reliable_carry_length, new.reliable_carry_length),
        ("certificate margin", old.certificate.margin, new.certificate.margin),
        ("scan: longest exact run", old_scan.longest_exact_run, new_scan.longest_exact_run),
        ("scan: failing runs", old_scan.failing_runs, new_scan.failing_runs),
        (
            "scan: first failure",
            _failure(old_scan.first_failure),
            _failure(new_scan.first_failure),
        ),
    ]


MARGIN_TOLERANCE = 1e-5  # numpy's BLAS differs by CPU in the last bits of the float64 proof


def _same(name: str, was: object, now: object) -> bool:
    if name == "certificate margin" and isinstance(was, float) and isinstance(now, float):
        return abs(was - now) <= MARGIN_TOLERANCE
    return was == now


def _table(rows: list[tuple[str, object, object]], left: str, right: str) -> tuple[bool, str]:
    width = max(len(name) for name, _, _ in rows)
    lines = [f"{'':{width}}  {left:>24}  {right:>24}"]
    same = True
    for name, was, now in rows:
        agree = _same(name, was, now)
        same &= agree
        verdict = "ok" if agree else "DIFFERS"
        lines.append(f"{name:{width}}  {str(was)[:24]:>24}  {str(now)[:24]:>24}  {verdict}")
    return same, "\n".join(lines)


def _read_card(model: Path) -> ModelCard:
    card_path, onnx_path = model.with_suffix(".json"), model.with_suffix(".onnx")
    for path in (card_path, onnx_path):
        if not path.is_file():
            raise SystemExit(f"error: {path} not found (give the model path without suffix)")
    return ModelCard.model_validate_json(card_path.read_text())


def compare(model: Path) -> tuple[bool, str]:
    """Re-measure MODEL.onnx and print each figure beside its card's; ok if all agree."""
    card = _read_card(model)
    onnx_path = model.with_suffix(".onnx")
    if card.architecture.cell == "lstm":
        return False, "evaluate re-scans RNN/GRU graphs; an LSTM's scan needs its torch model"
    recipe = export.recipe_from_card(card)
    graph = onnx.load(str(onnx_path))
    new = export.measure(
        graph,
        evaluate.ort_predictor(graph),
        make_split(recipe.data, recipe.seed),
        recipe.seed,
        OnnxCarryEngine(graph),
        card.metrics.carry_scan.scanned_up_to,
        card.metrics.certificate.search_limit,
    )
    rows = [("sha256", card.sha256, export.sha256(onnx_path)), *_rows(card.metrics, new)]
    ok, text = _table(rows, "card", "measured now")
    return ok, text + "\n" + ("all figures match the card" if ok else "some figures differ")


def retrain(model: Path, mode: kernels.Mode | None, out: Path | None = None) -> tuple[bool, str]:
    """Retrain from the card (into `out`, if given) and report 'same bytes', 'same figures' or
    'differs'."""
    card = _read_card(model)
    mode = mode or card.recipe.kernels.mode
    kernels.pin(mode)  # before torch runs anything
    recipe = replace(export.recipe_from_card(card), kernels=mode)
    trained = train(recipe, progress=False)
    with tempfile.TemporaryDirectory() as folder:
        new = export.export(
            trained,
            out or Path(folder) / card.name,
            scan_up_to=card.metrics.carry_scan.scanned_up_to,
            proof_limit=card.metrics.certificate.search_limit,
        )
    was, now = card.recipe.kernels, new.recipe.kernels
    lines = [
        f"card:    {was.mode} kernels, ATen {was.aten_capability}, {was.blas}, {was.machine}, "
        f"{was.threads} thread(s); {card.recipe.epochs_run} epochs",
        f"retrain: {now.mode} kernels, ATen {now.aten_capability}, {now.blas}, {now.machine}, "
        f"{now.threads} thread(s); {new.recipe.epochs_run} epochs, {new.recipe.wall_seconds} s",
    ]
    if new.sha256 == card.sha256:
        return True, "\n".join([*lines, f"{card.name}: same bytes as {model}.onnx"])
    rows = [("epochs run", card.recipe.epochs_run, new.recipe.epochs_run)]
    same, text = _table([*rows, *_rows(card.metrics, new.metrics)], "card", "retrained")
    if same:
        verdict = "same figures: other bytes, every figure on the card the same"
    else:
        verdict = "differs: the rows marked DIFFERS above"
    expected = "" if now == was else " (expected: the kernels differ)"
    return same, "\n".join([*lines, text, verdict + expected])
