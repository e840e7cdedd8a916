"""The training CLI: train (and export) a model, re-measure a shipped one, retrain one from its
card, or run the reproduction sweep.

python -m training train --recipe robust --seed 0 --out models/counter
python -m training evaluate models/counter
python -m training retrain models/counter
python -m training reproduce --seeds 10 --out docs/reproduction.md
python -m training decide models/counter-post
python -m training explain models/counter --json
python -m training explain-seeds --work /tmp/explain-seeds --out docs/reproduction.md

The kernels are pinned (training.kernels) before torch runs anything, so a 'portable' model
retrains to the same bytes on any x86-64 processor.
"""

import argparse
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from training import decided_seeds, export, kernels
from training.cli_cards import compare, retrain, summary
from training.cli_explain import run_explain, run_explain_seeds
from training.decide import SECONDS, decide_file
from training.reproduce import ROWS, run
from training.train import POST_SEED, RECIPES, train

# Importing torch fixes no kernels; its first operation does, so main() pins them first.
DEFAULT_SEEDS = {"post": POST_SEED, "robust": 0}


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


def _kernels_option(parser: argparse.ArgumentParser, default: str | None) -> None:
    parser.add_argument(
        "--kernels",
        choices=["portable", "native"],
        default=default,
        help="CPU kernels: 'portable' pins torch's to ones that give the same bytes on every "
        "x86-64 processor (about 30%% slower); 'native' lets torch pick the fastest for this "
        "one, which other processors do not reproduce bit for bit"
        + (f" (default: {default})" if default else " (default: the card's)"),
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train, measure, certify and export RNNs that add one to a decimal number.",
        # The epilog lists every command's options, which argparse's own help leaves out.
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        "20), Adam lr 1e-2, hidden noise std 1.0, trained until the certificate proves every "
        "carry (default: robust)",
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
        "validation accuracy; 60 for robust, which stops earlier once certified)",
    )
    train.add_argument(
        "--threads",
        type=_count(1),
        default=1,
        help="torch threads; results are bit-for-bit reproducible for a fixed count (default: 1)",
    )
    _kernels_option(train, "portable")
    train.add_argument(
        "--scan-up-to",
        type=_count(0),
        default=1000,
        help="exact carry scan: every run of k nines for k up to this, each next digit, every "
        "3-digit tail (default: 1000)",
    )
    train.add_argument("--notes", default="", help="free text stored in the model card")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate = commands.add_parser(
        "evaluate",
        help="re-measure a shipped model and compare with its card",
        description="Re-measure MODEL.onnx (sha256, accuracy, accuracy by length, carry scan, "
        "proof) and print each figure beside the one on MODEL.json; exit 1 if any differs.",
    )
    evaluate.add_argument("model", type=Path, help="model path without suffix, e.g. models/counter")

    retrain = commands.add_parser(
        "retrain",
        help="retrain a model from its card's recipe and say how the result compares",
        description="Retrain MODEL from the recipe on MODEL.json, export it to a temporary "
        "folder and report 'same bytes' (the .onnx file is identical), 'same figures' (other "
        "bytes, every figure on the card the same) or 'differs' (and how). Exit 0 for the first "
        "two, 1 for the last.",
    )
    retrain.add_argument("model", type=Path, help="model path without suffix, e.g. models/counter")
    _kernels_option(retrain, None)
    retrain.add_argument(
        "--out",
        type=Path,
        default=None,
        help="keep the retrained model here (path without suffix, e.g. build/models/counter); "
        "default: compare only, keep nothing",
    )

    decide = commands.add_parser(
        "decide",
        help="decide shipped RNNs' reliable carry length without retraining them",
        description="For each MODEL.onnx (a tanh RNN): prove the largest K it can (every input "
        "with at most K trailing nines right at every length), write the certificate "
        "MODEL.cert.npz beside the card, and find an input of run K + 1 the model answers "
        "wrong. Prints one line per model.",
    )
    decide.add_argument(
        "models", type=Path, nargs="+", help="model paths without suffix, e.g. models/counter-post"
    )
    decide.add_argument(
        "--key-digits",
        type=_count(1),
        default=2,
        help="the one-step copying sets keyed by this many digits (the walked fits key their "
        "own: training.walk_fit.WALK_KEYS, STEADY_KEYS)",
    )
    decide.add_argument(
        "--limit", type=_count(0), default=1000, help="the longest run of nines tried"
    )
    decide.add_argument(
        "--walk",
        action="store_true",
        help="where one-step sets do not close, try sets whose digit strings are walked "
        "(core.decide.walk): minutes to search, and its certificate takes seconds, not "
        "milliseconds, to check at load",
    )
    decide.add_argument(
        "--seconds",
        type=_count(1),
        default=int(SECONDS),
        help="end the fits after this many seconds of search: K then stays a range, as the "
        f"card says (default: {SECONDS:g}); a certificate found is still shortened and checked",
    )

    seeds = commands.add_parser(
        "decide-seeds",
        help="train the post recipe's RNN for seeds 0..SEEDS-1, decide each, write the rows",
        description="Train, export and decide (like `decide`) the post recipe's RNN for each "
        "seed, and put one row per seed into the page (between markers `reproduce` keeps).",
    )
    seeds.add_argument("--seeds", type=_count(1), default=10, help="seeds (default: 10)")
    seeds.add_argument(
        "--out",
        type=Path,
        default=Path("docs/reproduction.md"),
        help="the page to put the rows into (default: docs/reproduction.md)",
    )
    seeds.add_argument(
        "--walk",
        action="store_true",
        help="as decide --walk: try walked certificates where one-step sets do not close",
    )
    seeds.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="stop a seed's search after this many seconds (its row says so); default: none",
    )

    reproduce = commands.add_parser(
        "reproduce",
        help="the reproduction sweep: the post's claims beside our measurements over seeds",
        description="Train every row (post recipe with rnn, lstm, gru; robust recipe) over "
        "seeds 0..SEEDS-1 in torch, measure each, and write the table as Markdown. Run it "
        "again under ATEN_CPU_CAPABILITY=default|avx2|avx512 with --kernels native to add "
        "the same rows under other CPU kernels to the page.",
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
        default=1000,
        help="carry scan bound per seed (default: 1000)",
    )
    _kernels_option(reproduce, "portable")
    reproduce.add_argument(
        "--out", type=Path, default=None, help="write the Markdown table here (default: stdout)"
    )

    explain = commands.add_parser(
        "explain",
        help="why a model keeps or loses the carry: the dynamics of its map 'read a 9'",
        description="From MODEL.onnx's weights alone (numpy, float64): the carry chain (the "
        "state after j nines read with the carry on, and the right digit's margin over the "
        "best rival at each step), the fixed points of the 9-map and of the copying maps "
        "with their Jacobians' eigenvalues, carry_attractor, and where and why the chain "
        "leaves the carry. --write also draws MODEL-carry.png beside the model and records "
        "the verdict in MODEL.json's `dynamics` (listing the figure among its plots).",
    )
    explain.add_argument(
        "model", type=Path, nargs="+", help="model path without suffix, e.g. models/counter"
    )
    explain.add_argument("--json", action="store_true", help="print JSON, one object per model")
    explain.add_argument(
        "--write", action="store_true", help="draw the figure and update the model card"
    )
    explain.add_argument(
        "--doc",
        type=Path,
        default=None,
        help="also write the models' key figures into this page's marked section "
        "(docs/why-the-carry-fails.md)",
    )

    explain_seeds_command = commands.add_parser(
        "explain-seeds",
        help="test the dynamics' verdict on many seeds against their scans and certificates",
        description="Train (or reuse) seeds 0..SEEDS-1 of each recipe into WORK, predict each "
        "one's carry from its weights (explain) and write the table of predicted against "
        "measured into OUT's marked section.",
    )
    explain_seeds_command.add_argument(
        "--work", type=Path, required=True, help="scratch folder for the seeds"
    )
    explain_seeds_command.add_argument(
        "--seeds", type=_count(1), default=10, help="seeds per row (default: 10)"
    )
    explain_seeds_command.add_argument(
        "--rows",
        nargs="+",
        default=["post-rnn", "robust-rnn"],
        metavar="RECIPE-CELL[:SEEDS]",
        help="rows, e.g. post-rnn robust-rnn post-gru:3 (a row's own seed count after the "
        "colon; default: post-rnn robust-rnn)",
    )
    explain_seeds_command.add_argument(
        "--out", type=Path, default=None, help="Markdown page (default: stdout)"
    )
    parser.epilog = _every_usage(commands.choices)
    return parser


def _every_usage(commands: dict[str, argparse.ArgumentParser]) -> str:
    """Each command's usage line: the options of all of them in one --help."""
    lines = ["every command and its options (python -m training COMMAND --help explains each):"]
    for command in commands.values():
        usage = " ".join(command.format_usage().split()).removeprefix("usage: ")
        lines.append(
            textwrap.fill(
                usage, 96, initial_indent="  ", subsequent_indent="      ", break_on_hyphens=False
            )
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "explain":
        return run_explain(args.model, args.json, args.write, args.doc)
    if args.command == "explain-seeds":
        return run_explain_seeds(args.work, args.seeds, args.rows, args.out)
    if args.command == "evaluate":
        ok, text = compare(args.model)
        print(text)
        return 0 if ok else 1
    if args.command == "retrain":
        ok, text = retrain(args.model, args.kernels, args.out)
        print(text)
        return 0 if ok else 1
    if args.command == "decide":
        for model in args.models:
            line = decide_file(model, args.key_digits, args.limit, args.walk, args.seconds)
            print(line, flush=True)
        return 0
    if args.command == "decide-seeds":
        kernels.pin("portable")  # before torch runs anything
        walk = " --walk" if args.walk else ""
        cap = f" --seconds {args.seconds:g}" if args.seconds else ""
        command = (
            f"python -m training decide-seeds --seeds {args.seeds}{walk}{cap} --out {args.out}"
        )
        section = decided_seeds.section(args.seeds, command, args.walk, args.seconds)
        decided_seeds.write(args.out, section)
        return 0
    kernels.pin(args.kernels)  # before torch runs anything
    if args.command == "train":
        seed = DEFAULT_SEEDS[args.recipe] if args.seed is None else args.seed
        recipe = RECIPES[args.recipe](cell=args.cell, hidden_size=args.hidden, seed=seed)
        recipe = replace(recipe, threads=args.threads, kernels=args.kernels)
        if args.epochs is not None:
            recipe = replace(
                recipe, max_epochs=args.epochs, min_epochs=min(recipe.min_epochs, args.epochs)
            )
        trained = train(recipe, progress=not args.quiet)
        card = export.export(trained, args.out, scan_up_to=args.scan_up_to, notes=args.notes)
        print(summary(card))
        return 0
    run(args.seeds, args.rows, args.scan_up_to, args.out, args.kernels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
