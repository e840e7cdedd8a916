"""The training CLI: train (and export) a model, re-evaluate a shipped one, or run the sweep.

python -m training train --recipe robust --seed 0 --out models/counter
python -m training evaluate models/counter
python -m training reproduce --seeds 10 --out docs/reproduction.md
"""

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import onnx

from app.card import CarryFailure, ModelCard
from training import evaluate, export
from training.carry_scan import OnnxCarryEngine
from training.data import make_split
from training.reproduce import ROWS, run
from training.train import RECIPES, train

DEFAULT_SEEDS = {"post": 1, "robust": 0}


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= minimum, refused with a message that says so."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is too small: give {minimum} or more")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train, measure, certify and export RNNs that add one to a decimal number.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="train a model from scratch, measure it, certify it and export it",
        description="Train from scratch, then write OUT.onnx, OUT.json (the model card) and "
        "OUT.png (plots). Every metric on the card is measured on the exported ONNX file.",
    )
    train.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default="robust",
        help="'post': the blog's recipe (9K/1K numbers of 1-10 digits, Adagrad lr 1, stop at "
        "100%% validation); 'robust': carry-rich data (runs of up to 40 nines, lengths up to "
        "20), Adam lr 1e-2, hidden noise std 1.0 (default: robust)",
    )
    train.add_argument(
        "--cell",
        choices=["rnn", "lstm", "gru"],
        default="rnn",
        help="recurrent cell: rnn (tanh, the post's), lstm or gru (default: rnn)",
    )
    train.add_argument("--hidden", type=_count(1), default=16, help="hidden size (default: 16)")
    train.add_argument(
        "--seed",
        type=_count(0),
        default=None,
        help="seed of data, weights, shuffling and noise "
        f"(default: {DEFAULT_SEEDS['robust']} for robust, {DEFAULT_SEEDS['post']} for post)",
    )
    train.add_argument(
        "--out", type=Path, required=True, help="output path without suffix, e.g. models/counter"
    )
    train.add_argument(
        "--epochs",
        type=_count(1),
        default=None,
        help="maximum epochs (default: the recipe's: 50 for post, which stops earlier at 100%% "
        "validation accuracy; a fixed count for robust)",
    )
    train.add_argument(
        "--threads",
        type=_count(1),
        default=1,
        help="torch threads; results are bit-for-bit reproducible for a fixed count (default: 1)",
    )
    train.add_argument(
        "--scan-up-to",
        type=_count(0),
        default=100_000,
        help="exact carry scan: every run of k nines for k up to this (default: 100000)",
    )
    train.add_argument("--notes", default="", help="free text stored in the model card")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate = commands.add_parser(
        "evaluate",
        help="re-measure a shipped model and compare with its card",
        description="Re-measure MODEL.onnx (sha256, accuracy, accuracy by length, carry scan, "
        "certificate) and print each figure beside the one on MODEL.json.",
    )
    evaluate.add_argument("model", type=Path, help="model path without suffix, e.g. models/counter")

    reproduce = commands.add_parser(
        "reproduce",
        help="the reproduction sweep: the post's claims beside our measurements over seeds",
        description="Train every row (post recipe with rnn, lstm, gru; robust recipe) over "
        "seeds 0..SEEDS-1 in torch, measure each, and write the table as Markdown.",
    )
    reproduce.add_argument(
        "--seeds", type=_count(1), default=10, help="seeds per row (default: 10)"
    )
    reproduce.add_argument(
        "--rows",
        nargs="+",
        choices=ROWS,
        metavar="ROW",
        default=None,
        help="rows to run, any of: " + " ".join(ROWS) + " (default: all)",
    )
    reproduce.add_argument(
        "--scan-up-to",
        type=_count(0),
        default=10_000,
        help="carry scan bound per seed (default: 10000)",
    )
    reproduce.add_argument(
        "--out", type=Path, default=None, help="write the Markdown table here (default: stdout)"
    )
    return parser


def summary(card: ModelCard) -> str:
    """The card's headline figures, one per line."""
    m, r = card.metrics, card.recipe
    lines = [
        f"{card.name}: {card.architecture.cell} H{card.architecture.hidden_size}, "
        f"{r.name} recipe, seed {r.seed}, {r.epochs_run} epochs, {r.wall_seconds:.1f} s",
        f"  train accuracy {m.train_accuracy:.4f}, validation accuracy {m.val_accuracy:.4f}",
        "  accuracy by length: "
        + ", ".join(f"{a.length}: {a.correct}/{a.samples}" for a in m.accuracy_by_length),
        f"  reliable carry length {m.reliable_carry_length} (scanned to {m.carry_scanned_up_to} "
        f"in {m.carry_scan_engine}; first failure {_failure(m.carry_first_failure)})",
        f"  certified {m.carry_certified}: {m.certificate.reason}",
        f"  wrote {card.onnx_file}, {card.name}.json, " + ", ".join(card.plots),
    ]
    return "\n".join(lines)


def _failure(failure: CarryFailure | None) -> str:
    if failure is None:
        return "none"
    after = "alone" if failure.next_digit is None else f"then {failure.next_digit}"
    return f"{failure.nines} nines {after}"


def compare(model: Path) -> tuple[bool, str]:
    """Re-measure MODEL.onnx and print each figure beside its card's; ok if all agree."""
    card_path, onnx_path = model.with_suffix(".json"), model.with_suffix(".onnx")
    for path in (card_path, onnx_path):
        if not path.is_file():
            raise SystemExit(f"error: {path} not found (give the model path without suffix)")
    card = ModelCard.model_validate_json(card_path.read_text())
    recipe = export.recipe_from_card(card)
    if card.architecture.cell == "lstm":
        return False, "evaluate re-scans RNN/GRU graphs; an LSTM's scan needs its torch model"
    rows: list[tuple[str, object, object]] = [("sha256", card.sha256, export.sha256(onnx_path))]
    graph = onnx.load(str(onnx_path))
    new = export.measure(
        graph,
        evaluate.ort_predictor(graph),
        make_split(recipe.data, recipe.seed),
        recipe.seed,
        OnnxCarryEngine(graph),
        card.metrics.carry_scanned_up_to,
    )
    old = card.metrics
    rows += [
        ("train_accuracy", old.train_accuracy, new.train_accuracy),
        ("val_accuracy", old.val_accuracy, new.val_accuracy),
    ]
    rows += [
        (f"accuracy at {a.length} digits", a.accuracy, b.accuracy)
        for a, b in zip(old.accuracy_by_length, new.accuracy_by_length, strict=True)
    ]
    rows += [
        ("tested_length", old.tested_length, new.tested_length),
        ("reliable_carry_length", old.reliable_carry_length, new.reliable_carry_length),
        (
            "carry_first_failure",
            _failure(old.carry_first_failure),
            _failure(new.carry_first_failure),
        ),
        ("carry_certified", old.carry_certified, new.carry_certified),
        ("certificate margin", old.certificate.margin, new.certificate.margin),
    ]
    width = max(len(name) for name, _, _ in rows)
    lines = [f"{'':{width}}  {'card':>22}  {'measured now':>22}"]
    ok = True
    for name, was, now in rows:
        same = was == now
        ok &= same
        lines.append(
            f"{name:{width}}  {str(was)[:22]:>22}  {str(now)[:22]:>22}  "
            + ("ok" if same else "DIFFERS")
        )
    lines.append("all figures match the card" if ok else "some figures differ from the card")
    return ok, "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "train":
        seed = DEFAULT_SEEDS[args.recipe] if args.seed is None else args.seed
        recipe = RECIPES[args.recipe](cell=args.cell, hidden_size=args.hidden, seed=seed)
        recipe = replace(recipe, threads=args.threads)
        if args.epochs is not None:
            recipe = replace(recipe, max_epochs=args.epochs)
        trained = train(recipe, progress=not args.quiet)
        card = export.export(trained, args.out, scan_up_to=args.scan_up_to, notes=args.notes)
        print(summary(card))
        return 0
    if args.command == "evaluate":
        ok, text = compare(args.model)
        print(text)
        return 0 if ok else 1
    run(args.seeds, args.rows, args.scan_up_to, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
