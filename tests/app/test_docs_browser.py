"""/docs works without internet: its page loads only this service's files, and a real browser
(Debian's headless Chromium, driven by Playwright) renders it and runs an example request.

The in-process tests check every asset /docs and /redoc ask for is same-origin and served; the
browser test is the proof a user gets: the page renders, and "Try it out" gives the answer.
"""

import json
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from core.codec import add_one
from tests.app.server import start_server, stop_server

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and nothing of Chromium's own that would reach the network (updates, sync).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# What each kind of asset must be served as for a browser to use it.
CONTENT_TYPES = {"script": "javascript", "stylesheet": "text/css", "icon": "image/"}


class _Assets(HTMLParser):
    """The URLs a page loads: scripts, stylesheets and icons, each with its kind."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "script" and attr.get("src"):
            self.found.append(("script", str(attr["src"])))
        elif tag == "link" and attr.get("href"):
            rel = str(attr.get("rel"))
            self.found.append(("stylesheet" if rel == "stylesheet" else "icon", str(attr["href"])))


def assets_of(html: str) -> list[tuple[str, str]]:
    parser = _Assets()
    parser.feed(html)
    return parser.found


# Swagger UI needs its script and stylesheet; ReDoc its script (it carries its own styles).
@pytest.mark.parametrize(
    ("page", "needed"), [("/docs", {"script", "stylesheet"}), ("/redoc", {"script"})]
)
def test_docs_pages_load_only_assets_the_service_serves(
    client: TestClient, page: str, needed: set[str]
) -> None:
    answer = client.get(page)
    assert answer.status_code == 200
    assets = assets_of(answer.text)
    for kind, url in assets:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("", ""), f"{page} loads {url} from another site"
        served = client.get(url)
        assert served.status_code == 200, url
        assert CONTENT_TYPES[kind] in served.headers["content-type"], (url, served.headers)
        assert len(served.content) > 1000, f"{url} is too small to be the real file"
    assert needed <= {kind for kind, _ in assets}, assets


def _first_example(base: str) -> dict[str, Any]:
    """The request body Swagger UI puts in "Try it out" for POST /increment: the first example."""
    with urllib.request.urlopen(f"{base}/openapi.json", timeout=5) as answer:
        spec = json.loads(answer.read())
    body = spec["paths"]["/increment"]["post"]["requestBody"]["content"]["application/json"]
    first: dict[str, Any] = next(iter(body["examples"].values()))["value"]
    return first


@pytest.mark.browser
@pytest.mark.server
def test_docs_render_and_try_it_out_in_a_real_browser_offline(
    shipped: Path, tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    from playwright.sync_api import Route, sync_playwright

    server, base = start_server(shipped, tmp_path / "server.log")
    elsewhere: list[str] = []  # requests the page made to any other origin

    def same_origin_only(route: Route) -> None:
        if route.request.url.startswith(f"{base}/"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    try:
        example = _first_example(base)
        expected = add_one(str(example["number"]))
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1600})
                page.set_default_timeout(15_000)
                page.route("**/*", same_origin_only)
                page.goto(f"{base}/docs")  # returns once its scripts and styles have loaded
                assert elsewhere == [], f"/docs loads files from elsewhere: {elsewhere}"
                operation = page.locator(
                    ".opblock-post", has=page.locator('[data-path="/increment"]')
                )
                operation.locator(".opblock-summary").click()
                operation.get_by_role("button", name="Try it out").click()
                operation.get_by_role("button", name="Execute").click()
                live = operation.locator(".live-responses-table")
                status = live.locator(".response .response-col_status").first
                status.wait_for()
                shown_status = status.inner_text().strip()
                shown_body = live.locator(".response .response-col_description").first
                shown = json.loads(shown_body.locator("pre").first.inner_text())
                page.screenshot(path=str(tmp_path / "docs.png"), full_page=True)
            finally:
                browser.close()
    finally:
        stop_server(server)
    assert elsewhere == [], f"/docs reached beyond the service: {elsewhere}"
    assert shown_status == "200"
    assert shown["input"] == str(example["number"])
    assert shown["output"] == expected
    assert shown["check"]["correct"] is True
