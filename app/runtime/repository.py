"""The model repository (Triton's model repository extension): index, load, unload, poll.

COUNTER_MODEL_CONTROL says who changes the models served after the start:
- none (the default): nobody; the models of the start are served until the process stops;
- explicit: an operator, by POST /v2/repository/models/{name}/load and /unload;
- poll: the models folder, read every COUNTER_MODEL_POLL_SECONDS: a new or changed card is
  loaded, a removed one unloaded.
Only an operator changes the repository: load and unload need `Authorization: Bearer
<COUNTER_ADMIN_TOKEN>`, compared in constant time; with no token set they are off (403), with
another token 401. The index is public, as the models' metadata is.

A load runs every check the start runs (app.runtime.registry.load_model: the files, sha256,
the graph's contract, the proof re-run, the warm-up), on a worker thread while the old version
serves; only a model that passes is swapped in, in one step on the event loop
(app.runtime.service.install), so a request is answered by the old version or the new, never
by neither. A model that fails is refused with the reason and the old version keeps serving. An
unload takes the model out of the registry at once (new requests get 404) and waits for its
batcher to flush; runs already under way hold their own reference to the model and finish on it.
"""

import asyncio
import hmac
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path

from app.errors import Kind, ServiceError, preview
from app.runtime.models import LoadedModel, ModelLoadError
from app.runtime.registry import load_model
from app.runtime.service import CounterService
from app.settings import Settings
from core.card import ModelCard

log = logging.getLogger(__name__)

DRAIN_POLL_S = 0.01


@dataclass(frozen=True)
class Entry:
    """One model of the repository's index, as Triton lists it."""

    name: str
    version: str
    state: str  # READY | UNAVAILABLE
    reason: str


def authorize(header: str | None, settings: Settings) -> None:
    """An operator's call: 403 when no token is set, 401 unless the bearer token is right."""
    secret = settings.admin_token
    token = None if secret is None else secret.get_secret_value()
    if token is None:
        raise ServiceError(
            Kind.FORBIDDEN,
            "repository changes are off: COUNTER_ADMIN_TOKEN is not set on the service",
        )
    scheme, _, given = (header or "").partition(" ")
    # compare_digest: the time taken says nothing of how much of the token was right
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise ServiceError(
            Kind.UNAUTHORIZED,
            "load and unload need Authorization: Bearer <COUNTER_ADMIN_TOKEN>",
            {"www-authenticate": "Bearer"},
        )


class Repository:
    """The models folder and the service's models: what is there, what is served, changes."""

    def __init__(self, service: CounterService) -> None:
        self.service = service
        self.settings = service.settings
        self.folder: Path = service.settings.models_dir
        self._lock = asyncio.Lock()  # one change at a time
        self._seen: dict[Path, tuple[int, int]] = {}  # poll: each card's (mtime, size)
        self._poller: asyncio.Task[None] | None = None

    def _card_path(self, name: str) -> Path | None:
        """The card naming this model: <name>.json, or any card whose name it is."""
        direct = self.folder / f"{name}.json"
        if direct.is_file():
            return direct
        for path in sorted(self.folder.glob("*.json")):
            try:
                if ModelCard.model_validate_json(path.read_bytes()[: 1 << 20]).name == name:
                    return path
            except (OSError, ValueError):
                continue
        return None

    def index(self) -> list[Entry]:
        """Every model served, and every card in the folder that is not (with why, if known)."""
        served = self.service.registry.models
        entries = {
            name: Entry(name, model.card.version, "READY", "") for name, model in served.items()
        }
        # the versions a reload replaced, still served by version (COUNTER_MAX_MODEL_VERSIONS)
        older = [
            Entry(name, version, "READY", "")
            for name, versions in self.service.older.items()
            for version in versions
        ]
        reasons = {exc.path.stem: exc.reason for exc in self.service.registry.skipped}
        for path in sorted(self.folder.glob("*.json")):
            try:
                card = ModelCard.model_validate_json(path.read_bytes()[: 1 << 20])
                name, version = card.name, card.version
            except (OSError, ValueError):
                name, version = path.stem, ""
            if name not in entries:
                reason = reasons.get(path.stem, "not loaded")
                entries[name] = Entry(name, version, "UNAVAILABLE", reason)
        return sorted([*entries.values(), *older], key=lambda e: e.name)

    def _explicit(self, what: str) -> None:
        mode = self.settings.model_control
        if mode != "explicit":
            raise ServiceError(
                Kind.FORBIDDEN,
                f"models are not {what} on request: COUNTER_MODEL_CONTROL is {mode!r}; "
                "'explicit' allows it",
            )

    async def load(self, name: str) -> LoadedModel:
        """Load (or reload) a model by name; refused with the reason if any check fails."""
        self._explicit("loaded")
        return await self._load(name)

    async def _load(self, name: str) -> LoadedModel:
        async with self._lock:
            path = self._card_path(name)
            if path is None:
                raise ServiceError(
                    Kind.UNKNOWN_MODEL, f"no model card for {preview(name)} in {self.folder}"
                )
            cap = self.settings.max_model_bytes
            try:  # every check the start runs, off the event loop: the old version serves on
                walked = self.settings.walked_certificates
                model = await asyncio.to_thread(load_model, path, cap, None, walked)
            except ModelLoadError as exc:
                log.warning("repository: refused %s: %s", name, exc)
                raise ServiceError(
                    Kind.MODEL_REFUSED,
                    f"model {preview(name)} was refused: {exc.reason}; the version served "
                    "before, if any, still serves",
                ) from None
            if model.card.name != name:
                raise ServiceError(
                    Kind.MODEL_REFUSED,
                    f"the card {path.name} names {preview(model.card.name)}, not {preview(name)}",
                )
            self.service.install(model)
            log.info("repository: serving %s %s", name, model.card.version)
            return model

    async def unload(self, name: str) -> None:
        """Stop serving a model; returns once its waiting requests are answered."""
        self._explicit("unloaded")
        await self._unload(name)

    async def _unload(self, name: str) -> None:
        async with self._lock:
            if name == self.service.registry.default:
                raise ServiceError(
                    Kind.FORBIDDEN,
                    f"{preview(name)} is the default model (COUNTER_DEFAULT_MODEL) and stays "
                    "served; load a new version of it instead",
                )
            batchers = self.service.remove(name)
            models = [b.model for b in batchers]  # every version removed
            # the drain: runs queued on the loop, and calls on gRPC's handler threads
            while any(b.busy() for b in batchers) or self.service.thread_calls(models):
                await asyncio.sleep(DRAIN_POLL_S)
            log.info("repository: unloaded %s", name)

    # poll mode
    def start_polling(self) -> None:
        if self.settings.model_control == "poll":
            self._seen = self._cards()
            self._poller = asyncio.ensure_future(self._poll())

    def stop_polling(self) -> None:
        if self._poller is not None:
            self._poller.cancel()

    def _cards(self) -> dict[Path, tuple[int, int]]:
        found = {}
        for path in self.folder.glob("*.json"):
            try:
                stat = path.stat()
            except OSError:
                continue
            found[path] = (stat.st_mtime_ns, stat.st_size)
        return found

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.model_poll_seconds)
            now = self._cards()
            names = set()
            for path, stamp in sorted(now.items()):
                try:
                    card = ModelCard.model_validate_json(path.read_bytes()[: 1 << 20])
                except (OSError, ValueError) as exc:
                    log.warning("repository: cannot read %s: %s", path, exc)
                    continue
                names.add(card.name)
                if self._seen.get(path) != stamp:
                    await self._logged(self._load(card.name))
            default = self.service.registry.default
            for name in sorted(set(self.service.registry.models) - names - {default}):
                await self._logged(self._unload(name))
            self._seen = now

    @staticmethod
    async def _logged(change: Awaitable[object]) -> None:
        """poll: a refusal is logged (nobody asked, so nobody is answered)."""
        try:
            await change
        except ServiceError as exc:
            log.warning("repository: %s", exc.message)
