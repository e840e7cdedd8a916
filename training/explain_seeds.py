"""The dynamics' verdict tested on models it was not fitted to: seeds of both recipes.

Each seed is trained and exported (`python -m training train`, into a scratch folder, reused
when already there), so its card holds the certificate and the carry scan measured on the
exported ONNX file. core.dynamics then predicts from the weights alone whether the carry lasts
for ever (carry_attractor) and otherwise the longest run of nines it survives; the table sets
that beside the scan's longest exact run and the certificate, seed by seed.
"""

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from core.card import ModelCard
from core.dynamics import analyse
from core.weights import recurrent_weights_from_onnx

BEGIN = "<!-- explain-seeds: written by python -m training explain-seeds; do not edit -->"
END = "<!-- /explain-seeds -->"


@dataclass(frozen=True)
class SeedVerdict:
    recipe: str
    cell: str
    seed: int
    attractor: bool
    predicted: int | None  # None: unbounded
    lost_at: int | None
    scan_run: int
    scanned_up_to: int
    scan_failing: list[tuple[int, int]]
    proved: int | str
    trained_at: str  # the commit whose training code made the seed ("?" when not recorded)
    margin_at_fail: float | None  # the chain's carry margin at the scan's first failing run
    fail_phase: str | None  # where the scan's first failure's wrong digit is

    @property
    def agrees(self) -> bool:
        """The verdict and the measurements tell the same story.

        An attractor must mean no failure in the scan and a certified model never lacks one;
        a transient must be lost exactly where the scan first fails (or both beyond the scan).
        """
        clean = self.scan_run >= self.scanned_up_to
        if self.proved == "unbounded" and not self.attractor:
            return False
        if self.predicted is None:
            return clean
        if self.predicted >= self.scanned_up_to:
            return clean
        return self.predicted == self.scan_run


def train_seed(work: Path, recipe: str, cell: str, seed: int) -> Path:
    """The seed's model path (without suffix), trained and exported unless already there."""
    out = work / f"{recipe}-{cell}-{seed}"
    if not out.with_suffix(".json").is_file():
        command = [sys.executable, "-m", "training", "train", "--recipe", recipe, "--cell", cell]
        command += ["--seed", str(seed), "--out", str(out), "--quiet"]
        print("$", " ".join(command), file=sys.stderr, flush=True)
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        )
        out.with_suffix(".trained-at").write_text(head.stdout.strip() or "?")
    return out


def verdict(model: Path, recipe: str, cell: str, seed: int) -> SeedVerdict:
    card = ModelCard.model_validate_json(model.with_suffix(".json").read_text())
    dynamics = analyse(recurrent_weights_from_onnx(model.with_suffix(".onnx")))
    scan = card.metrics.carry_scan
    failure = scan.first_failure
    margin = None
    if failure is not None and failure.nines < dynamics.chain.margin.shape[0]:
        margin = float(dynamics.chain.margin[failure.nines])
    return SeedVerdict(
        recipe=recipe,
        cell=cell,
        seed=seed,
        attractor=dynamics.carry_attractor,
        predicted=dynamics.predicted_exact_run,
        lost_at=dynamics.chain.lost_at,
        scan_run=scan.longest_exact_run,
        scanned_up_to=scan.scanned_up_to,
        scan_failing=list(scan.failing_runs),
        proved=card.metrics.reliable_carry_length,
        trained_at=_trained_at(model),
        margin_at_fail=margin,
        fail_phase=None
        if failure is None
        else _phase(failure.nines, failure.expected, failure.got),
    )


def _trained_at(model: Path) -> str:
    mark = model.with_suffix(".trained-at")
    return mark.read_text().strip() if mark.is_file() else "?"


def _phase(nines: int, expected: str, got: str) -> str:
    """Which step of the scan's failing input went wrong, read least significant first."""
    width = max(len(expected), len(got))
    a, b = expected.rjust(width, "0")[::-1], got.rjust(width, "0")[::-1]
    wrong = next(i for i in range(width) if a[i] != b[i])
    if wrong < nines:
        return f"reading the nines (step {wrong})"
    if wrong == nines:
        return "spending the carry on the digit after the nines"
    return f"copying the tail, {wrong - nines} steps after the nines"


def explain_disagreement(v: SeedVerdict) -> str:
    """The measured facts behind a disagreement, in words."""
    lost = "never" if v.lost_at is None else f"at {v.lost_at} nines"
    parts = [f"the float64 chain loses the carry {lost}"]
    if v.scan_failing:
        first = v.scan_failing[0][0]
        parts.append(f"the scan first fails at {first} nines, {v.fail_phase}")
        if v.margin_at_fail is not None:
            parts.append(f"the chain's carry margin there is {v.margin_at_fail:.3f}")
    if v.proved == "unbounded" and not v.attractor:
        parts.append("the certificate proves every carry but no carrying attractor was found")
    return "; ".join(parts)


def _run(value: int | None, up_to: int) -> str:
    if value is None:
        return "unbounded"
    return f"≥{up_to}" if value >= up_to else str(value)


def table(verdicts: list[SeedVerdict], command: str = "") -> str:
    """The Markdown section, between markers so a rerun replaces it in place."""
    by_row: dict[tuple[str, str], list[SeedVerdict]] = {}
    for v in verdicts:
        by_row.setdefault((v.recipe, v.cell), []).append(v)
    lines = [
        BEGIN,
        "## Why the carry fails: the dynamics' prediction against the scan and the certificate",
        "",
        f"Made by `make explain` (`{command or 'python -m training explain-seeds'}`): each "
        "seed trained and exported with `python -m training "
        "train --recipe R --cell C --seed S`; *predicted* comes from the weights alone "
        "(`core/dynamics.py`: the carry chain in float64 and the fixed points of the map 'read "
        "a 9'), *measured* from the seed's card (the carry scan on the ONNX file in "
        "onnxruntime, every run of up to 1000 nines with every next digit and 3-digit tail; "
        "the certificate's proved reliable carry length). Agrees: an attractor and no scan "
        "failure (and every certified seed has an attractor), or no attractor and the carry "
        "lost exactly where the scan first fails. See docs/why-the-carry-fails.md.",
        "",
    ]
    for (recipe, cell), rows in by_row.items():
        agree = sum(v.agrees for v in rows)
        lines.append(f"{recipe} recipe, {cell}: {agree}/{len(rows)} seeds agree.")
    lines += [
        "",
        "| recipe | cell | seed | carry_attractor | predicted longest exact run | scan: longest "
        "exact run | scan: failing runs | proved | agrees | trained at |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in verdicts:
        failing = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in v.scan_failing) or "none"
        lines.append(
            f"| {v.recipe} | {v.cell} | {v.seed} | {str(v.attractor).lower()} "
            f"| {_run(v.predicted, v.scanned_up_to)} | {_run(v.scan_run, v.scanned_up_to)} "
            f"| {failing} | {v.proved} | {'yes' if v.agrees else 'NO'} | {v.trained_at} |"
        )
    disagreements = [v for v in verdicts if not v.agrees]
    if disagreements:
        lines += ["", "Every disagreement, and why:", ""]
        for v in disagreements:
            lines.append(f"- {v.recipe} {v.cell} seed {v.seed}: {explain_disagreement(v)}.")
    lines.append(END)
    return "\n".join(lines) + "\n"


def kept_section(page: Path) -> str:
    """The page's marked section, for a writer of the rest of the page to keep."""
    text = page.read_text() if page.is_file() else ""
    if BEGIN not in text or END not in text:
        return ""
    return "\n" + BEGIN + text.split(BEGIN, 1)[1].split(END, 1)[0] + END + "\n"


def write_section(page: Path, section: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the section between the markers on the page (or append it); the section
    starts with `begin` and ends with `end`."""
    text = page.read_text() if page.is_file() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    page.write_text(text)
