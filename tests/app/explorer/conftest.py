"""The explorer tests' fixtures: one real server and one headless Chromium for all of them,
and a fresh desktop-sized Visit per test that fails it if the page reached beyond the service
or logged an error."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.app.explorer.page import DESKTOP, Visit
from tests.app.server import start_server, stop_server
from tests.app.test_docs_browser import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="package")
def base(shipped: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("explorer") / "server.log"
    server, url = start_server(shipped, log, COUNTER_ACCESS_LOG="false")
    yield url
    stop_server(server)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def visit(browser: Browser, base: str) -> Iterator[Visit]:
    opened = Visit(browser, base, DESKTOP)
    yield opened
    opened.context.close()
    assert opened.elsewhere == [], f"the page reached beyond the service: {opened.elsewhere}"
    assert opened.errors == [], f"errors in the page: {opened.errors}"
