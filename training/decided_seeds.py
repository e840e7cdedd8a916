"""The decided carry length over seeds: train the post recipe's RNN for seeds 0..N-1, decide each
(training.decide) and write one row per seed into docs/reproduction.md, between markers that
`python -m training reproduce` keeps when it rewrites the page.
"""

import math
import multiprocessing
import os
import platform
import signal
import tempfile
from multiprocessing.connection import Connection
from pathlib import Path

from core.card import Decision, ModelCard
from training import export, kernels, walk_pool
from training.decide import SECONDS, decide_file
from training.train import RECIPES, train

BEGIN = "<!-- decided carry length: python -m training decide-seeds -->"
END = "<!-- end of decided carry length -->"
SCAN = 50  # the exported card's carry scan: the failing input is searched by the decision
# issue 20's goal: at least 9 seeds in 10 decided, each within a minute of search on 2 cores
GOAL_SHARE = 0.9
GOAL_SECONDS = 60.0


def _decide(model: Path, walk: bool, seconds: float | None) -> str | None:
    """decide_file's line, or None when the search outlasts `seconds` (then stopped: it runs
    in a child process, forked so that it needs nothing pickled but the path, in a process
    group of its own, so that its walks' workers stop with it)."""
    if seconds is None:
        return decide_file(model, walk=walk)
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_decide_alone, args=(model, walk, send))
    child.start()
    send.close()
    if not receive.poll(seconds):
        assert child.pid is not None  # started
        os.killpg(child.pid, signal.SIGKILL)
        child.join()
        return None
    try:
        line: str = receive.recv()
    except EOFError:
        child.join()
        raise RuntimeError(f"deciding {model} failed (exit {child.exitcode})") from None
    child.join()
    return line


def _decide_alone(model: Path, walk: bool, send: Connection) -> None:
    os.setsid()
    try:
        send.send(decide_file(model, walk=walk))
    finally:
        walk_pool.shutdown()


def decided(decision: Decision | None) -> bool:
    """K decided: refuted at K + 1, or proved for every run (a carrying set)."""
    return decision is not None and (decision.exact or decision.proved_carry_length == "unbounded")


def goal(decisions: list[Decision | None]) -> str:
    """The goal's line: the seeds decided within GOAL_SECONDS of search, against the goal
    (None: a search stopped)."""
    seeds = len(decisions)
    needed = math.ceil(GOAL_SHARE * seeds)
    within = sum(
        d is not None and decided(d) and d.search_seconds <= GOAL_SECONDS for d in decisions
    )
    verdict = "met" if within >= needed else "not met"
    return (
        f"Goal: at least {needed}/{seeds} decided, each within {GOAL_SECONDS:g} s of search: "
        f"{within}/{seeds}, {verdict}."
    )


def _row(seed: int, card: ModelCard, seconds: float | None) -> str:
    decision = card.metrics.decision
    scan = card.metrics.carry_scan
    exact_run = scan.longest_exact_run
    shown = f"≥{exact_run}" if exact_run == scan.scanned_up_to else str(exact_run)
    if decision is None:
        return f"| {seed} | search stopped | | no | {shown} | > {seconds:g} |"
    failure = decision.refutation
    failing = f"{failure.example} + 1 gave {failure.got}" if failure else "none found"
    exact = "yes" if decision.exact else "no"
    if decision.proved_carry_length == "unbounded":
        failing, exact = "none: every run is proved", "every run"
    return (
        f"| {seed} | {decision.proved_carry_length} | {failing} | {exact} | "
        f"{shown} | {decision.search_seconds} |"
    )


def section(seeds: int, command: str, walk: bool = False, seconds: float | None = None) -> str:
    """Train and decide every seed (walk: try walked certificates where one-step sets do not
    close, as `decide --walk`; seconds: stop a seed's search then); the page's section, markers
    included."""
    rows, decisions = [], []
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(seeds):
            trained = train(RECIPES["post"](cell="rnn", seed=seed), progress=False)
            model = Path(folder) / f"post-{seed}"
            export.export(trained, model, scan_up_to=SCAN)
            line = _decide(model, walk, seconds)
            print(f"seed {seed}: {line or f'search stopped after {seconds:g} s'}", flush=True)
            card = ModelCard.model_validate_json(model.with_suffix(".json").read_text())
            rows.append(_row(seed, card, seconds))
            decisions.append(card.metrics.decision)
    return "\n".join(
        [
            BEGIN,
            "## Decided carry length, post recipe RNN (core.decide)",
            "",
            f"Made by `{command}`: each seed trained, exported and decided (proved K with a "
            "certificate checked in one pass, and an input of a longer run answered wrong).",
            f"Decided (exactly: refuted at K + 1; or proved for every run by a carrying set): "
            f"{sum(map(decided, decisions))}/{seeds}. Seconds: the decision's search on this "
            f"machine ({platform.machine()}, numpy SIMD {kernels.numpy_simd()}: search speeds "
            f"differ by machine), its walks on {walk_pool.cores()} cores (training.walk_pool); "
            "its fits end "
            f"after {SECONDS:g} s (training.decide.SECONDS), and K then stays a range.",
            goal(decisions),
            "",
            "| seed | proved K | failing input | exact | scan's longest exact run | seconds |",
            "|---|---|---|---|---|---|",
            *rows,
            END,
        ]
    )


def write(page: Path, text: str) -> None:
    """Put the section into the page, replacing an earlier one (or at its end)."""
    old = page.read_text() if page.exists() else ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        page.write_text(head + text + tail)
    else:
        page.write_text(old.rstrip("\n") + "\n\n" + text + "\n")


def kept(old_page: Path) -> str:
    """The decided section of a page, to carry over when the page is rewritten ('' if none)."""
    old = old_page.read_text() if old_page.exists() else ""
    if BEGIN not in old or END not in old:
        return ""
    return BEGIN + old.split(BEGIN, 1)[1].split(END, 1)[0] + END
