"""The headers /docs (Swagger UI) and /redoc are sent with: a Content-Security-Policy, no
framing and no MIME sniffing, as the explorer page has.

fastapi_offline makes both pages, each with an inline script that starts the viewer; the
policy allows exactly those scripts by their SHA-256 (read from the page as sent), so no other
inline script runs. ReDoc starts its search in a worker made from a blob: URL.
"""

import base64
import hashlib
import re
from collections.abc import Iterable

from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGES = ("/docs", "/redoc", "/docs/oauth2-redirect")
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
