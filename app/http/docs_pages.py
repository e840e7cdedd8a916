"""/docs (Swagger UI) and /redoc, served with their files from this service, not from a CDN
(the files are fastapi-offline's), so they work on machines without internet; and the headers
they are sent with: a Content-Security-Policy, no framing and no MIME sniffing, as the explorer
page has.

Each page has an inline script that starts the viewer; the policy allows exactly those scripts
by their SHA-256 (read from the page as sent), so no other inline script runs. ReDoc starts its
search in a worker made from a blob: URL.
"""

import base64
import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGES = ("/docs", "/redoc", "/docs/oauth2-redirect")
FILES_URL = "/static-offline-docs"
_FILES = Path(fastapi_offline.__file__).parent / "static"  # Swagger UI's and ReDoc's JS and CSS
_INLINE = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def policy(html: bytes) -> str:
    """The page's policy: its own files, its inline scripts by hash, and nothing else."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in _INLINE.findall(html)
    )
    return (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
        "worker-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


class _Guarded:
    """An HTML page's route app, its answer sent with the headers above."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        html = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
        for message in held:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"content-security-policy", policy(html).encode()),
                    (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                ]
            await send(message)


def guard(routes: Iterable[BaseRoute]) -> None:
    """Send the documentation pages among these routes with the headers above."""
    for route in routes:
        if isinstance(route, Route) and route.path in PAGES:
            route.app = _Guarded(route.app)


def add(app: FastAPI) -> None:
    """Serve /docs, /redoc and their files (the app is made with docs_url=redoc_url=None)."""
    app.mount(FILES_URL, StaticFiles(directory=_FILES.as_posix()), name="static-offline-docs")
    redirect_url = app.swagger_ui_oauth2_redirect_url or PAGES[2]

    async def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=app.title + " - Swagger UI",
            oauth2_redirect_url=redirect_url,
            swagger_js_url=f"{root}{FILES_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{FILES_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{FILES_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    async def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=app.title + " - ReDoc",
            redoc_js_url=f"{root}{FILES_URL}/redoc.standalone.js",
            with_google_fonts=False,
            redoc_favicon_url=f"{root}{FILES_URL}/favicon.png",
        )

    app.add_api_route(PAGES[0], swagger, include_in_schema=False)
    app.add_api_route(redirect_url, swagger_redirect, include_in_schema=False)
    app.add_api_route(PAGES[1], redoc, include_in_schema=False)
    guard(app.routes)
