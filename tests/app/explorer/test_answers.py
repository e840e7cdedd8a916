"""The explorer shows a number's answer digit under digit with every step's probabilities, names
a typo in a typist's words, shows counter-post's flags and its known failure, and answers a long
number right in a window of its columns; it loads nothing from anywhere but this service."""

import json
import random
import urllib.request

import pytest

from core.card import ModelCard
from core.codec import add_one, carry_run
from tests.app.explorer.page import (
    MARKS,
    Visit,
    answered,
    ask,
    cells,
    positions,
    row,
    shown_digits,
)

pytestmark = MARKS


def test_the_page_loads_only_from_this_service(visit: Visit) -> None:
    page = visit.open()
    answered(page, "1476233999", "counter")
    page.wait_for_function(
        "() => [...document.images].length > 0 && [...document.images].every(i => i.naturalWidth)"
    )
    visit.shot("loaded")
    paths = {url.removeprefix(visit.base) for url in visit.requested}
    assert all(url.startswith(f"{visit.base}/") for url in visit.requested), visit.requested
    # It did load its parts: the same-origin check means nothing for a page that loads nothing.
    needed = {"/", "/static/explorer.css", "/static/explorer.js", "/models"}
    needed |= {"/increment", "/models/counter/plots/counter.png"}
    assert needed <= paths, paths
    assert not visit.failed, visit.failed


@pytest.mark.parametrize("number", ["7", "1476233999", "999", "4003999999999999"])
def test_typing_a_number_shows_the_answer_and_every_step(visit: Visit, number: str) -> None:
    page = visit.open()
    page.fill("#number", "")
    page.locator("#number").press_sequentially(number, delay=20)  # key by key, as typed
    answered(page, number, "counter")
    expected = add_one(number)
    assert row(page, "input") == ["", *number]  # the extra step has no input digit
    assert shown_digits(row(page, "model")) == expected
    assert shown_digits(row(page, "exact")) == expected
    assert "Right" in page.locator("#verdict").inner_text()
    assert positions(page) == list(range(len(number), -1, -1))  # units on the right
    heat = cells(page)
    assert len(heat) == 10 * (len(number) + 1)
    # Each column holds that step's probabilities: they sum to 1, and the chosen (ringed)
    # cell is the likeliest digit and the digit shown in the model's row.
    model_digits = dict(zip(positions(page), row(page, "model"), strict=True))
    for position in range(len(number) + 1):
        column = [c for c in heat if c["position"] == position]
        assert sorted(c["digit"] for c in column) == list(range(10))
        assert sum(c["p"] for c in column) == pytest.approx(1.0, abs=1e-3)
        chosen = [c for c in column if c["chosen"]]
        assert len(chosen) == 1
        assert chosen[0]["p"] == max(c["p"] for c in column)
        assert str(chosen[0]["digit"]) == model_digits[position]
    # The carry run: the trailing nines and the column the carry lands in are marked.
    run = carry_run(number)
    marked = [int(p) for p in page.locator("#grid th.pos.run").all_inner_texts()]
    assert sorted(marked) == list(range(run + 1))
    visit.shot(f"typed-{number}")


def test_a_typo_is_named_in_a_typist_s_words(visit: Visit) -> None:
    """Not the API's "a JSON integer >= 0 (1299, 1299.0 or 1.299e3)": a text box takes digits."""
    page = visit.open()
    answered(page, "1476233999", "counter")
    asked = len(visit.requested)
    page.fill("#number", "12x4")
    error = page.locator("#error[role=alert]")
    error.wait_for()
    assert error.inner_text() == "Type a whole number, digits only (like 1299): “12x4” has “x”."
    assert page.locator("#answer").is_hidden()
    page.fill("#count-start", "-5")
    page.click("#count-go")
    status = page.locator("#count-status[data-reason=failed]")
    status.wait_for()
    assert status.inner_text() == "Type a whole number, digits only (like 1299): “-5” has “-”."
    assert visit.requested[asked:] == []  # said at once, without asking the service
    visit.shot("refused")


def test_counter_post_shows_its_flags_and_its_known_failure(
    visit: Visit, post_card: ModelCard
) -> None:
    # counter-post proves nothing: every input is past its reliable carry length.
    assert post_card.metrics.reliable_carry_length == -1
    page = visit.open()
    ask(page, "1234", "counter-post")
    assert page.locator('#flags [data-flag="beyond_reliable_carry"]').is_visible()
    assert page.locator('#flags [data-flag="not_proved"]').is_visible()
    assert "Not proved" in page.locator("#verdict").inner_text()
    # The card beside it says the same, and names the first failure of its scan.
    failure = post_card.metrics.carry_scan.first_failure
    assert failure is not None
    card = page.locator("#card")
    assert "no proof covers any answer" in card.inner_text()
    assert failure.example in card.inner_text()
    # Its first known failure answers wrong, and the page shows where.
    card.get_by_role("button", name=f"Try {failure.example}").click()
    answered(page, failure.example, "counter-post")
    verdict = page.locator("#verdict").inner_text()
    assert "Wrong" in verdict
    assert failure.expected in verdict
    assert shown_digits(row(page, "exact")) == failure.expected
    assert shown_digits(row(page, "model")) == failure.got
    assert page.locator('#flags [data-flag="known_failing_carry"]').is_visible()
    wrong = page.locator("#grid tr.digits.model td.wrong")
    assert wrong.count() >= 1
    assert page.locator("#grid tr.digits.check td.wrong").count() == wrong.count()
    assert "went wrong" in page.locator("#heatmap-text").inner_text()
    visit.shot("counter-post-first-failure")


def test_a_long_number_answers_right_in_its_window(visit: Visit, base: str) -> None:
    number = "".join(random.Random(1).choices("0123456789", k=9_990)) + "9" * 10
    page = visit.open()
    ask(page, number)
    body = json.dumps({"number": number, "model": "counter", "detail": "none"}).encode()
    request = urllib.request.Request(
        f"{base}/increment", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        output = json.loads(answer.read())["output"]
    assert output == add_one(number)
    shown = dict(zip(positions(page), row(page, "model"), strict=True))
    assert all(shown[p] == output[-1 - p] for p in shown if p < len(output))
    page.focus("#window-slider")
    page.keyboard.press("Home")  # the highest digits, far from the carry
    assert 10 not in positions(page)
    page.click("#window-carry")
    assert 10 in positions(page)  # the carry lands at position 10
    visit.shot("long")
