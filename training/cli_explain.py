"""`python -m training explain` and `explain-seeds`: the dynamics' verdict on models
(training.explain) and on many seeds against their scans and certificates
(training.explain_seeds), printed and written into the pages' marked sections."""

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from training import explain, explain_seeds
from training.train import RECIPES


def run_explain(models: Sequence[Path], as_json: bool, write: bool, doc: Path | None) -> int:
    reports = []
    for model in models:
        if not model.with_suffix(".onnx").is_file():
            raise SystemExit(f"error: {model.with_suffix('.onnx')} not found")
        dynamics, info = explain.explain(model, model.parent if write else None)
        if write:
            explain.write_card(model, dynamics, info["figure"])
        print(json.dumps(info) if as_json else explain.text(info))
        reports.append((info, dynamics))
    if doc is not None:
        section = explain.doc_section(reports)
        explain_seeds.write_section(doc, section, explain.DOC_BEGIN, explain.DOC_END)
    return 0


def run_explain_seeds(work: Path, seeds: int, rows: Sequence[str], out: Path | None) -> int:
    work.mkdir(parents=True, exist_ok=True)
    verdicts = []
    for spec in rows:
        row, _, count = spec.partition(":")
        recipe, _, cell = row.partition("-")
        if (
            recipe not in RECIPES
            or cell not in ("rnn", "gru", "lstm")
            or not (count == "" or count.isdigit())
        ):
            raise SystemExit(
                f"error: {spec!r} is not RECIPE-CELL[:SEEDS] (recipes {sorted(RECIPES)})"
            )
        for seed in range(int(count) if count else seeds):
            model = explain_seeds.train_seed(work, recipe, cell, seed)
            verdict = explain_seeds.verdict(model, recipe, cell, seed)
            print(
                f"{row} seed {seed}: attractor {verdict.attractor}, predicted "
                f"{verdict.predicted}, scan {verdict.scan_run}, proved {verdict.proved}, "
                f"{'agrees' if verdict.agrees else 'DISAGREES'}",
                file=sys.stderr,
                flush=True,
            )
            verdicts.append(verdict)
    command = f"python -m training explain-seeds --work {work} --seeds {seeds} --rows "
    command += " ".join(rows) + (f" --out {out}" if out else "")
    section = explain_seeds.table(verdicts, command)
    if out is None:
        print(section)
    else:
        explain_seeds.write_section(out, section)
    return 0
