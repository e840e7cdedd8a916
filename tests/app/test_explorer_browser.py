"""The explorer page at / in a real browser: Debian's headless Chromium, driven by Playwright,
against the real server (`python -m app` on a loopback port).

What a person sees is checked against exact arithmetic and the model cards: the answer digit
under digit, a heatmap of 10 x (digits + 1) cells whose chosen cells are the model's digits,
counter-post's flags and its known failure, counting that streams and stops where asked, the
keyboard alone, and a phone's width. Every request the page makes is recorded, and only this
service may answer. Each state's screenshot is saved under test-artifacts/explorer/; with
COUNTER_WRITE_SCREENSHOT=1 the README's picture, docs/explorer.png, is retaken too.
"""

import json
import math
import os
import random
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Request, Route, ViewportSize, sync_playwright

from core.card import ModelCard
from core.codec import add_one, carry_run
from core.dynamics import carry_chain
from core.weights import recurrent_weights_from_onnx
from tests.app.server import start_server, stop_server
from tests.app.test_docs_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.server,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium"
    ),
]

MODELS = Path(__file__).resolve().parents[2] / "models"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "explorer"
README_PICTURE = Path(__file__).resolve().parents[2] / "docs" / "explorer.png"
DESKTOP: ViewportSize = {"width": 1400, "height": 1000}
PHONE: ViewportSize = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def base(shipped: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("explorer") / "server.log"
    server, url = start_server(shipped, log, COUNTER_ACCESS_LOG="false")
    yield url
    stop_server(server)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


class Visit:
    """One page load: the page, every URL it requested, and what went wrong in it."""

    def __init__(self, browser: Browser, base: str, viewport: ViewportSize) -> None:
        self.base = base
        self.requested: list[str] = []
        self.elsewhere: list[str] = []
        self.errors: list[str] = []  # console errors (CSP refusals among them) and exceptions
        self.failed: list[tuple[str, str]] = []  # requests that did not complete, and why
        self.context = browser.new_context(viewport=viewport)
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.page.route("**/*", self._same_origin_only)
        self.page.on("request", lambda request: self.requested.append(request.url))
        self.page.on("requestfailed", self._failed)
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _same_origin_only(self, route: Route) -> None:
        if route.request.url.startswith(f"{self.base}/"):
            route.continue_()
        else:
            self.elsewhere.append(route.request.url)
            route.abort()

    def _failed(self, request: Request) -> None:
        self.failed.append((request.url, request.failure or ""))

    def open(self) -> Page:
        self.page.goto(f"{self.base}/")
        self.page.wait_for_selector("body[data-ready]")
        return self.page

    def shot(self, name: str, readme: bool = False) -> None:
        """Save the page; `readme`: it is also the README's picture, when asked to retake it."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        if readme and os.environ.get("COUNTER_WRITE_SCREENSHOT") == "1":
            shutil.copyfile(path, README_PICTURE)
            print(f"screenshot: {README_PICTURE}")


@pytest.fixture
def visit(browser: Browser, base: str) -> Iterator[Visit]:
    opened = Visit(browser, base, DESKTOP)
    yield opened
    opened.context.close()
    assert opened.elsewhere == [], f"the page reached beyond the service: {opened.elsewhere}"
    assert opened.errors == [], f"errors in the page: {opened.errors}"


def answered(page: Page, number: str, model: str) -> None:
    """Wait until the page shows the answer to `number` by `model`."""
    page.wait_for_selector(f'#verdict[data-number="{number}"][data-model="{model}"]')


def ask(page: Page, number: str, model: str = "counter") -> None:
    page.check(f"#model-{model}")
    page.fill("#number", number)
    answered(page, number, model)


def row(page: Page, name: str) -> list[str]:
    """One digit row of the grid, left to right as shown."""
    return [c.strip() for c in page.locator(f"#grid tr.digits.{name} td").all_inner_texts()]


def positions(page: Page) -> list[int]:
    return [int(p) for p in page.locator("#grid th.pos").all_inner_texts()]


def cells(page: Page) -> list[dict[str, Any]]:
    """The heatmap's cells: digit, position, probability and the marks on each."""
    found: list[dict[str, Any]] = page.locator("#grid td.cell").evaluate_all(
        """cells => cells.map(c => ({digit: +c.dataset.digit, position: +c.dataset.position,
            p: +c.dataset.p, chosen: c.classList.contains('chosen')}))"""
    )
    return found


def overflow(page: Page) -> tuple[int, int]:
    width: list[int] = page.evaluate(
        "() => [document.scrollingElement.scrollWidth, window.innerWidth]"
    )
    return width[0], width[1]


def shown_digits(digits: list[str]) -> str:
    """A row's digits as a number: leading zeros (the unwritten ones) dropped."""
    return "".join(digits).lstrip("0") or "0"


def log_rows(page: Page) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = page.locator("#count-log tbody tr").evaluate_all(
        """rows => rows.map(r => ({index: +r.dataset.index, wrong: r.classList.contains('wrong'),
            cells: [...r.cells].map(c => c.innerText.trim())}))"""
    )
    return rows


def counted(page: Page) -> str:
    """Wait for the count to end; the reason the page gives."""
    status = page.locator("#count-status[data-reason]")
    status.wait_for(timeout=30_000)
    return str(status.get_attribute("data-reason"))


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


def test_the_keyboard_alone_drives_the_page(visit: Visit, post_card: ModelCard) -> None:
    failure = post_card.metrics.carry_scan.first_failure
    assert failure is not None
    page = visit.open()
    answered(page, "1476233999", "counter")
    keys = page.keyboard

    def tab_to(selector: str, limit: int = 60) -> None:
        for _ in range(limit):
            keys.press("Tab")
            if page.evaluate(f"() => document.activeElement.matches({json.dumps(selector)})"):
                # A person must see where the focus is.
                style = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
                assert style != "none", selector
                return
        raise AssertionError(f"{selector} is not reachable with Tab")

    tab_to("#number")
    keys.press("Control+A")
    keys.type(failure.example)
    tab_to('input[name="model"]')  # the checked radio of the group
    keys.press("ArrowDown")  # a radio group moves with the arrows
    assert page.locator("#model-counter-post").is_checked()
    tab_to("#go")
    keys.press("Enter")
    answered(page, failure.example, "counter-post")
    assert "Wrong" in page.locator("#verdict").inner_text()
    tab_to("#log-scale")
    keys.press("Space")
    assert page.locator("#log-scale").is_checked()
    # Count from the keyboard: start with Space, stop with Enter.
    tab_to("#count-start")
    keys.press("Control+A")
    keys.type("1")
    tab_to("#count-n")
    keys.press("Control+A")
    keys.type("10000")
    tab_to("#count-stop-on-error")
    keys.press("Space")
    assert not page.locator("#count-stop-on-error").is_checked()
    tab_to("#count-go")
    keys.press("Space")
    page.wait_for_function("() => document.querySelectorAll('#count-log tbody tr').length >= 2")
    # Starting disabled the Start button; the focus went on to Stop, and Tab finds it again.
    assert page.evaluate("() => document.activeElement.id") == "count-stop"
    keys.press("Shift+Tab")
    tab_to("#count-stop")
    keys.press("Enter")
    assert counted(page) == "stopped"
    assert page.evaluate("() => document.activeElement.id") == "count-go"
    visit.shot("keyboard")
    visit.failed.clear()  # the aborted count


def test_a_phone_s_width_never_scrolls_sideways(browser: Browser, base: str) -> None:
    phone = Visit(browser, base, PHONE)
    try:
        page = phone.open()
        answered(page, "1476233999", "counter")
        page.wait_for_function("() => [...document.images].every(i => i.complete)")
        assert overflow(page)[0] <= PHONE["width"]
        phone.shot("phone")
        # 10^4 digits: a window of columns that fits, never 10^4 columns.
        digits = random.Random(0).choices("0123456789", k=9_995)
        number = "".join(digits) + "99999"
        page.fill("#number", number)
        answered(page, number, "counter")
        grid = page.locator("#grid")
        width, total = int(str(grid.get_attribute("data-width"))), len(number) + 1
        assert str(grid.get_attribute("data-total")) == str(total)
        assert 4 <= width < 20
        assert len(cells(page)) == 10 * width
        assert positions(page) == list(range(width - 1, -1, -1))
        assert overflow(page)[0] <= PHONE["width"]
        phone.shot("phone-long")
        # The window moves: higher digits, then the slider's far left (the highest).
        page.click("#window-higher")
        assert positions(page) == list(range(2 * width - 1, width - 1, -1))
        page.focus("#window-slider")
        page.keyboard.press("Home")
        assert positions(page)[0] == total - 1
        expected = add_one(number)
        exact = dict(zip(positions(page), row(page, "exact"), strict=True))
        for position, digit in exact.items():
            written = expected[-1 - position] if position < len(expected) else "0"
            assert digit == written
        assert overflow(page)[0] <= PHONE["width"]
        # Counting long numbers at that width.
        page.get_by_role("button", name="counter from 999…990: watch it roll over").click()
        assert counted(page) == "count"
        assert overflow(page)[0] <= PHONE["width"]
        phone.shot("phone-count")
    finally:
        phone.context.close()
    assert phone.elsewhere == []
    assert phone.errors == []


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


def margins(page: Page) -> dict[int, float]:
    """The margin row: position -> the right digit's margin shown along the carry run."""
    found: list[list[float]] = page.locator("#grid tr.digits.margin td[data-margin]").evaluate_all(
        "cells => cells.map(c => [+c.dataset.position, +c.dataset.margin])"
    )
    return {int(p): m for p, m in found}


def margins_from_cells(page: Page) -> dict[int, float]:
    """The same margins worked out here from the heatmap's probabilities and the exact digits."""
    exact = dict(zip(positions(page), row(page, "exact"), strict=True))
    heat = cells(page)
    out = {}
    for position in margins(page):
        column = {c["digit"]: c["p"] for c in heat if c["position"] == position}
        right = int(exact[position])
        rival = max(p for d, p in column.items() if d != right)
        out[position] = math.log(column[right]) - math.log(rival)
    return out


def test_the_carry_margin_holds_on_counter_and_fades_on_counter_post(
    visit: Visit, post_card: ModelCard
) -> None:
    # a few more nines than counter-post's first failing run: its carry is lost on the way
    failure = post_card.metrics.carry_scan.first_failure
    assert failure is not None
    nines = failure.nines + 2
    number = "3" + "9" * nines
    page = visit.open()
    ask(page, number, "counter")
    shown = margins(page)
    assert sorted(shown) == list(range(nines + 1))  # the nines and the digit that spends the carry
    assert shown == pytest.approx(margins_from_cells(page), abs=1e-3)
    assert all(m > 0 for m in shown.values())
    assert page.locator("#grid tr.digits.margin td.lost").count() == 0
    assert "the carry holds" in page.locator("#heatmap-text").inner_text()
    # Reading nines from the start is core.dynamics' carry chain: the same margins (float32
    # in onnxruntime here, float64 there).
    chain = carry_chain(recurrent_weights_from_onnx(MODELS / "counter.onnx"), nines)
    for position in range(nines):
        assert shown[position] == pytest.approx(chain.output_margin[position + 1], abs=1e-3)

    ask(page, number, "counter-post")
    shown = margins(page)
    assert shown == pytest.approx(margins_from_cells(page), abs=1e-3)
    assert shown[0] > shown[3] > 0  # fading
    # A step's margin is below zero exactly where the model's digit is wrong.
    wrong = {
        int(p)
        for p in page.locator("#grid tr.digits.model td.wrong").evaluate_all(
            "cells => cells.map(c => c.dataset.position)"
        )
    }
    lost = {p for p, m in shown.items() if m < 0}
    assert lost
    assert lost == {p for p in wrong if p in shown}
    assert page.locator("#grid tr.digits.margin td.lost").count() == len(lost)
    assert "the carry is lost there" in page.locator("#heatmap-text").inner_text()
    visit.shot("counter-post-carry-margin")


@pytest.mark.parametrize("name", ["counter", "counter-post"])
def test_the_card_shows_carry_attractor_and_links_its_figure(visit: Visit, name: str) -> None:
    card = ModelCard.model_validate_json((MODELS / f"{name}.json").read_text())
    assert card.dynamics is not None
    assert card.dynamics.figure is not None
    page = visit.open()
    ask(page, "7", name)
    claim = str(card.dynamics.carry_attractor).lower()
    item = page.locator(f'#card dd.dynamics[data-carry-attractor="{claim}"]')
    assert item.is_visible()
    assert f"carry_attractor {claim}" in item.inner_text()
    assert f"re-derived it from the loaded weights: {claim}" in item.inner_text()
    link = item.locator("a.dynamics-figure")
    assert link.get_attribute("href") == f"/models/{name}/plots/{card.dynamics.figure}"
    figure = page.request.get(f"{visit.base}/models/{name}/plots/{card.dynamics.figure}")
    assert figure.ok
    assert figure.headers["content-type"] == "image/png"
    assert figure.body() == (MODELS / card.dynamics.figure).read_bytes()
    image = page.locator("#dynamics-figure img")
    image.wait_for()
    page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=image.element_handle())
    visit.shot(f"{name}-card-dynamics")
