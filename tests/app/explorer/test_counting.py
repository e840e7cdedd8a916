"""Counting in the explorer: it rolls over number after number, stops at the first wrong answer
when asked (or shows every line, right or wrong), and Stop cuts the stream itself."""

from core.card import ModelCard
from core.codec import add_one, carry_run
from tests.app.explorer.page import MARKS, Visit, ask, counted, log_rows

pytestmark = MARKS


def test_counting_rolls_over_number_after_number(visit: Visit) -> None:
    page = visit.open()
    start = "9" * 19 + "0"
    page.check("#model-counter")
    page.fill("#count-start", start)
    page.fill("#count-n", "30")
    page.click("#count-go")
    assert counted(page) == "count"
    rows = log_rows(page)
    assert [r["index"] for r in rows] == list(range(1, 31))
    number = start
    for r in rows:  # index, input, model's answer, exact, right, proved, flags
        assert r["cells"][1] == number
        assert r["cells"][2] == r["cells"][3] == add_one(number)
        assert r["cells"][4].startswith("✓")
        assert r["cells"][5] == "proved"
        number = r["cells"][2]
    assert any(r["cells"][1] == "9" * 20 for r in rows)  # it rolled over 10^20
    assert page.locator("#odo-model").inner_text() == number  # the last answer, in big
    visit.shot("count-roll-over")


def test_counting_stops_at_the_first_wrong_answer(visit: Visit, post_card: ModelCard) -> None:
    start = int("9" * 17 + "0")  # the preset's start: its carry breaks at 18 nines
    failing = post_card.metrics.carry_scan.failing_runs
    first_wrong = next(
        n for n in range(start, start + 100) if any(a <= carry_run(str(n)) <= b for a, b in failing)
    )
    page = visit.open()
    ask(page, "9" * 18, "counter-post")  # beside the count in the README's picture
    page.get_by_role("button", name="counter-post from 999…990: watch it break").click()
    assert counted(page) == "error"
    rows = log_rows(page)
    assert len(rows) == first_wrong - start + 1  # stopped exactly there
    assert [r["wrong"] for r in rows] == [False] * (len(rows) - 1) + [True]
    last = rows[-1]["cells"]
    assert last[1] == str(first_wrong)
    assert last[3] == add_one(str(first_wrong))
    assert last[2] != last[3]
    assert last[4].startswith("✗")
    assert "known failing carry" in last[6]
    status = page.locator("#count-status").inner_text()
    assert "first wrong answer" in status
    assert add_one(str(first_wrong)) in status
    visit.shot("count-breaks", readme=True)


def test_a_count_of_n_shows_n_lines_right_or_wrong(visit: Visit) -> None:
    page = visit.open()
    page.check("#model-counter-post")
    page.fill("#count-start", "9" * 17 + "0")
    page.fill("#count-n", "25")
    page.select_option("#count-pace", "0")
    page.uncheck("#count-stop-on-error")
    page.click("#count-go")
    assert counted(page) == "count"
    rows = log_rows(page)
    assert [r["index"] for r in rows] == list(range(1, 26))
    assert any(r["wrong"] for r in rows)  # it went on past the wrong answer
    assert all(r["cells"][5] == "no" for r in rows)  # counter-post proves nothing
    assert all("beyond reliable carry" in r["cells"][6] for r in rows)


def test_stop_aborts_the_count(visit: Visit) -> None:
    page = visit.open()
    page.check("#model-counter")
    # A 3000-digit start makes the whole count about 90 MB: far more than the socket and the
    # browser can buffer, so the fetch is still streaming when Stop is clicked. From "1" the
    # service could send all 10 000 lines (3 MB) in under a second, before the third row shows.
    page.fill("#count-start", "1" * 3000)
    page.fill("#count-n", "10000")
    page.select_option("#count-pace", "300")
    page.click("#count-go")
    page.wait_for_function("() => document.querySelectorAll('#count-log tbody tr').length >= 3")
    page.click("#count-stop")
    assert counted(page) == "stopped"
    shown = len(log_rows(page))
    page.wait_for_timeout(1000)
    assert len(log_rows(page)) == shown < 10
    assert page.locator("#count-go").is_enabled()
    # The stream itself was cut, not just hidden: the browser aborted the fetch.
    assert any(url.endswith("/count") for url, _ in visit.failed), visit.failed
    visit.failed.clear()
