"""The seed table of the dynamics' verdicts: when a verdict agrees with the measurements, and
that the table keeps its place on docs/reproduction.md when either writer reruns."""

import json
from dataclasses import asdict
from pathlib import Path

from tests.training.test_reproduce import _result
from training.explain_seeds import BEGIN, END, SeedVerdict, table, write_section
from training.reproduce import run


def _verdict(**changes: object) -> SeedVerdict:
    fields: dict[str, object] = {
        "recipe": "post",
        "cell": "rnn",
        "seed": 1,
        "attractor": False,
        "predicted": 4,
        "lost_at": 5,
        "scan_run": 4,
        "scanned_up_to": 1000,
        "scan_failing": [(5, 1000)],
        "proved": -1,
        "trained_at": "3eb74ec",
        "margin_at_fail": -0.46,
        "fail_phase": "spending the carry on the digit after the nines",
    }
    fields.update(changes)
    return SeedVerdict(**fields)  # type: ignore[arg-type]


def test_a_transient_agrees_only_where_the_scan_first_fails() -> None:
    assert _verdict().agrees
    assert not _verdict(predicted=5).agrees
    assert not _verdict(predicted=3).agrees


def test_an_attractor_agrees_with_a_clean_scan_and_a_certificate() -> None:
    clean: dict[str, object] = {
        "predicted": None,
        "lost_at": None,
        "scan_run": 1000,
        "scan_failing": [],
    }
    assert _verdict(attractor=True, **clean).agrees
    assert _verdict(attractor=True, proved="unbounded", **clean).agrees
    # an attractor the scan contradicts, or a certified model without one, disagrees
    assert not _verdict(attractor=True, predicted=None, lost_at=None).agrees
    assert not _verdict(
        proved="unbounded",
        predicted=1000,
        lost_at=None,
        **{k: v for k, v in clean.items() if k not in ("predicted", "lost_at")},
    ).agrees


def test_the_table_counts_agreements_and_explains_each_disagreement() -> None:
    text = table([_verdict(), _verdict(seed=2, predicted=7)])
    assert "post recipe, rnn: 1/2 seeds agree." in text
    assert "| post | rnn | 2 | false | 7 | 4 | 5-1000 | -1 | NO | 3eb74ec |" in text
    assert "post rnn seed 2: the float64 chain loses the carry at 5 nines" in text
    assert text.startswith(BEGIN)
    assert text.rstrip().endswith(END)


def test_the_section_is_replaced_in_place_and_kept_by_the_reproduction_page(
    tmp_path: Path,
) -> None:
    page = tmp_path / "reproduction.md"
    page.write_text("# Reproducing\n\nthe sweep's table\n")
    write_section(page, table([_verdict()]))
    write_section(page, table([_verdict(), _verdict(seed=2)]))
    text = page.read_text()
    assert text.count(BEGIN) == 1
    assert "2/2 seeds agree" in text
    assert text.startswith("# Reproducing")
    # the reproduction sweep rewrites the page from its cached results and keeps the section
    cached = _result("post-rnn", 0, 4, 1)
    (tmp_path / "reproduction.jsonl").write_text(json.dumps(asdict(cached)) + "\n")
    sweep = run(1, ["post-rnn"], 1000, page, mode="portable")
    text = page.read_text()
    assert text.startswith(sweep)
    assert text.count(BEGIN) == 1
    assert "2/2 seeds agree" in text
