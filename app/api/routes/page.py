"""The explorer page: GET / and its files under /static, and each model's plots.

Plain HTML, CSS and JS from app/static, served by the service itself: no CDN and no build
step, so the page works wherever the API does. Only the files shipped in that folder are
served, by exact name, and a plot only when the model's card lists it: a path never reaches
the file system as given. None of these is part of the API, so /docs does not list them.
Each answers HEAD too, as static file servers do (link checkers and caches ask it).

Caching: every file is sent with its ETag and `Cache-Control: no-cache`, so a browser asks
again each time and gets a 304 while the file is unchanged; a new release shows at once.
"""

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.errors import Kind, ServiceError, preview
from app.http.exchange import service_of
from app.runtime.files import UnreadableFileError, read_capped

router = APIRouter(tags=["page"], include_in_schema=False)

STATIC = Path(__file__).resolve().parents[2] / "static"  # app/static
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
PLOT_BYTES = 8 << 20  # a plot is tens of KB; the cap keeps a stray file from being read whole
# The page may load and call only this service; the browser enforces it, whatever the JS does.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class Asset:
    """A file as sent: its bytes, media type and ETag."""

    body: bytes
    media_type: str
    etag: str


def asset(body: bytes, media_type: str) -> Asset:
    return Asset(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


@cache
def static_files() -> dict[str, Asset]:
    """The files of app/static by name, read once (on the first request that needs them)."""
    return {
        path.name: asset(path.read_bytes(), MEDIA_TYPES[path.suffix])
        for path in sorted(STATIC.iterdir())
        if path.suffix in MEDIA_TYPES and path.is_file()
    }


def send(request: Request, file: Asset, headers: dict[str, str] | None = None) -> Response:
    """The file, or 304 when the browser already holds this version."""
    sent = {
        "etag": file.etag,
        "cache-control": "no-cache",
        "x-content-type-options": "nosniff",
        **(headers or {}),
    }
    if file.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=sent)
    return Response(file.body, media_type=file.media_type, headers=sent)


@router.api_route("/", methods=["GET", "HEAD"])
async def page(request: Request) -> Response:
    """The explorer."""
    return send(request, static_files()["index.html"], {"content-security-policy": PAGE_POLICY})


@router.api_route("/static/{name}", methods=["GET", "HEAD"])
async def static(name: str, request: Request) -> Response:
    """One of the page's files, by its exact name."""
    file = static_files().get(name)
    if file is None:
        raise ServiceError(Kind.NOT_FOUND, f"no page file named {preview(name)}")
    return send(request, file)


@router.api_route("/models/{name}/plots/{file}", methods=["GET", "HEAD"])
async def plot(name: str, file: str, request: Request) -> Response:
    """A PNG plot the model's card lists, from the models folder beside its .onnx."""
    model = service_of(request).model(name)  # 404 unknown model, 503 before ready
    listed = model.card.plots
    # A card could list any string: only a plain file name ending in .png is ever opened.
    if file not in listed or Path(file).name != file or not file.endswith(".png"):
        shown = ", ".join(listed) or "none"
        raise ServiceError(
            Kind.NOT_FOUND, f"model {name!r} has no plot named {preview(file)}; its plots: {shown}"
        )
    try:
        body = read_capped(model.path.parent / file, PLOT_BYTES, "PLOT_BYTES")
    except (FileNotFoundError, UnreadableFileError):
        # e.g. an image built without the plots: the card still lists them.
        raise ServiceError(
            Kind.NOT_FOUND, f"the plot {file!r} of model {name!r} is not in the models folder"
        ) from None
    return send(request, asset(body, "image/png"))
