"""The explorer without a mouse and on a phone: the keyboard alone drives every control with
the focus in sight, and a phone's width never scrolls sideways, even for 10^4 digits."""

import json
import random

from playwright.sync_api import Browser

from core.card import ModelCard
from core.codec import add_one
from tests.app.explorer.page import (
    MARKS,
    PHONE,
    Visit,
    answered,
    cells,
    counted,
    overflow,
    positions,
    row,
)

pytestmark = MARKS


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
