"""The explorer page as the browser tests drive it: a Visit (one page load, every request it
made and what went wrong in it) and what a test reads off the page (the digit rows, the
heatmap's cells, the count's log)."""

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Request, Route, ViewportSize

from tests.app.test_docs_browser import CHROMIUM

# Every explorer test: a real server and a headless Chromium, skipped where it is missing.
MARKS = [
    pytest.mark.browser,
    pytest.mark.server,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium"
    ),
]

MODELS = Path(__file__).resolve().parents[3] / "models"
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "explorer"
README_PICTURE = Path(__file__).resolve().parents[3] / "docs" / "explorer.png"
DESKTOP: ViewportSize = {"width": 1400, "height": 1000}
PHONE: ViewportSize = {"width": 390, "height": 844}


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
