"""The explorer's router, in-process: the page and its files (content types, caching, only
same-origin assets, a weight budget), and the plots route, which opens only a file a card
lists, by plain name, from the models folder; anything else is 404 in the service's shape."""

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from app.api.routes.page import STATIC
from app.settings import Settings
from tests.app.client import started

# What each file is sent as, for a browser to use it (nosniff makes the type binding).
TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
# HTML + CSS + JS of the page; the budget keeps it a page, not an application bundle.
WEIGHT_BUDGET = 64_000
# The namespace an SVG must name; it is an identifier, never fetched.
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


class _Links(HTMLParser):
    """Every URL in a page's attributes: src, href, action, and the like."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []  # (tag, url)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "poster", "data") and value:
                self.urls.append((tag, value))


def links_of(html: str) -> list[tuple[str, str]]:
    parser = _Links()
    parser.feed(html)
    return parser.urls


def imports_of(js: str) -> list[str]:
    """The modules a script imports (static and dynamic)."""
    return re.findall(r"""(?:\bfrom|\bimport)\s*\(?\s*["']([^"']+)["']""", js)


def error_shape(answer: Response, kind: str = "not_found") -> None:
    assert answer.status_code == 404, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert set(body) == {"error", "message", "request_id"}, body
    assert body["error"] == kind


def test_the_page_is_html_that_may_load_only_this_service(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    # The browser itself refuses anything from elsewhere, whatever the scripts try.
    assert "default-src 'none'" in policy
    for directive in ("script-src", "style-src", "img-src", "connect-src"):
        assert f"{directive} 'self';" in policy, policy
    assert "unsafe" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<html lang=" in page.text
    head = client.head("/")
    assert head.status_code == 200
    assert head.content == b""


def test_the_page_references_only_same_origin_files_and_each_is_served(
    client: TestClient,
) -> None:
    html = client.get("/").text
    links = links_of(html)
    assert {"script", "link"} <= {tag for tag, _ in links}
    to_check: list[str] = []
    for tag, url in links:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("", ""), f"<{tag}> points elsewhere: {url}"
        assert url.startswith(("/", "#")), url  # a path here, or a place on the page
        if url.startswith("/static/"):
            to_check.append(url)
    seen: set[str] = set()
    while to_check:  # the page's files, then every module they import
        url = to_check.pop()
        if url in seen:
            continue
        seen.add(url)
        served = client.get(url)
        assert served.status_code == 200, url
        assert TYPES[Path(url).suffix] in served.headers["content-type"], (url, served.headers)
        if url.endswith(".js"):
            for module in imports_of(served.text):
                assert module.startswith("./"), f"{url} imports {module} from elsewhere"
                to_check.append("/static/" + module.removeprefix("./"))
    # Every script is reached from the page: none is dead weight, none is loaded unseen.
    shipped = {f"/static/{p.name}" for p in STATIC.glob("*.js")}
    assert shipped <= seen, shipped - seen
    assert len(shipped) >= 3


def test_no_file_of_the_page_names_another_host() -> None:
    for path in sorted(STATIC.iterdir()):
        text = path.read_text().replace(SVG_NAMESPACE, "")
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), path.name


def test_the_page_weighs_little() -> None:
    weight = sum(p.stat().st_size for p in STATIC.iterdir() if p.suffix in (".html", ".css", ".js"))
    print(f"explorer page: {weight} bytes of HTML, CSS and JS")
    assert weight <= WEIGHT_BUDGET


@pytest.mark.parametrize("name", sorted(p.name for p in STATIC.iterdir()))
def test_each_file_is_cached_until_it_changes(client: TestClient, name: str) -> None:
    url = "/" if name == "index.html" else f"/static/{name}"
    first = client.get(url)
    assert first.status_code == 200
    assert first.headers["cache-control"] == "no-cache"  # always ask; 304 while unchanged
    etag = first.headers["etag"]
    again = client.get(url, headers={"if-none-match": etag})
    assert again.status_code == 304
    assert again.content == b""
    changed = client.get(url, headers={"if-none-match": '"another"'})
    assert changed.status_code == 200
    assert changed.content == first.content


def test_a_plot_on_the_card_is_served(client: TestClient, shipped: Path) -> None:
    for model in client.get("/models").json()["models"]:
        assert model["plots"], model["name"]
        for file in model["plots"]:
            plot = client.get(f"/models/{model['name']}/plots/{file}")
            assert plot.status_code == 200
            assert plot.headers["content-type"] == "image/png"
            assert plot.content == (shipped / file).read_bytes()
            assert plot.content.startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize(
    "path",
    [
        "/static/nothing.js",
        "/static/..%2Fmain.py",
        "/static/%2e%2e/main.py",
        "/static/%2Fetc%2Fpasswd",
        "/static//etc/passwd",
        "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/models/counter/plots/counter-post.png",  # a file in the folder, on another card
        "/models/counter/plots/counter.json",
        "/models/counter/plots/counter.onnx",
        "/models/counter/plots/..%2Fcounter.png",
        "/models/counter/plots/..%2F..%2Fapp%2Fmain.py",
        "/models/counter/plots/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/models/counter/plots/%2e%2e",
        "/models/counter/plots/%2Fetc%2Fpasswd",
        "/models/counter/plots//etc/passwd",
        "/models/counter/plots/%5C..%5Ccounter.json",
        "/models/counter/plots/counter.png%00.json",
    ],
)
def test_paths_outside_the_lists_are_404_in_the_service_s_shape(
    client: TestClient, path: str
) -> None:
    answer = client.get(path)
    error_shape(answer)
    assert b"PNG" not in answer.content


def test_a_plot_of_an_unknown_model_names_the_models(client: TestClient) -> None:
    answer = client.get("/models/nope/plots/counter.png")
    error_shape(answer, "unknown_model")
    assert "counter-post" in answer.json()["message"]


def test_a_card_cannot_list_its_way_out_of_the_models_folder(models_copy: Path) -> None:
    """A card is data: a plot name that is a path, or a file that is not a PNG, or one that
    is missing, is refused (404), never opened or answered 500."""
    secret = models_copy.parent / "secret.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\nsecret")
    (models_copy / "inner").mkdir()
    (models_copy / "inner" / "nested.png").write_bytes(b"\x89PNG\r\n\x1a\nnested")
    card_path = models_copy / "counter-post.json"
    card = json.loads(card_path.read_text())
    listed = ["../secret.png", str(secret), "inner/nested.png", "counter.json", "gone.png"]
    card["plots"] = listed
    card_path.write_text(json.dumps(card))
    with started(Settings(models_dir=models_copy, access_log=False)) as client:
        assert client.get("/models/counter-post").json()["plots"] == listed
        for path in (
            "..%2Fsecret.png",
            "%2E%2E%2Fsecret.png",
            str(secret).replace("/", "%2F"),
            "inner%2Fnested.png",
            "nested.png",
            "counter.json",
            "gone.png",
        ):
            answer = client.get(f"/models/counter-post/plots/{path}")
            error_shape(answer)
            assert b"PNG" not in answer.content


def test_the_page_is_not_part_of_the_api_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not any(p == "/" or p.startswith("/static") or "/plots/" in p for p in paths)
