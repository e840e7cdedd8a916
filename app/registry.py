"""The model registry: load every models/<name>.json card, verify its .onnx, open and warm it.

Fault policy (start-up): a fault in the default model (the one whose card name, or whose
card's file name <name>.json, is COUNTER_DEFAULT_MODEL: its card invalid, its .onnx missing,
its sha256 different from the card, a file onnxruntime cannot load, a graph that breaks the
model contract), a folder with no model card, or a default model that is not there: loading
raises ModelLoadError naming the file and the reason, and `python -m app` exits with that one
line and status 2. A fault in any other model: that model is skipped with a warning naming the
file and the reason, and the service starts without it.
"""

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from app.metrics import DIGITS_PROCESSED, MODEL_RUN_SECONDS, MODELS_LOADED
from core.card import ModelCard
from core.codec import Digits, encode_batch
from core.session import open_session

log = logging.getLogger(__name__)

Probabilities = npt.NDArray[np.float32]  # [batch, time, 10]

# A probe for the warm-up run, which doubles as a check of the model contract.
_PROBE = ["0123456789", "9"]


class ModelLoadError(Exception):
    """One model file that cannot be served, and why, in one line."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class LoadedModel:
    """A verified, warmed-up model: its card and its onnxruntime session."""

    card: ModelCard
    path: Path
    session: Any  # onnxruntime.InferenceSession (untyped)
    _timer: Any = field(repr=False)  # this model's model-run histogram
    _digits: Any = field(repr=False)  # this model's digits-processed counter

    def run(self, digits: Digits) -> Probabilities:
        """int64 [batch, time] -> float32 [batch, time, 10]: one onnxruntime run, timed."""
        start = perf_counter()
        (probs,) = self.session.run([self.card.output_name], {self.card.input_name: digits})
        self._timer.observe(perf_counter() - start)
        result: Probabilities = probs
        return result

    def count_digits(self, digits: int) -> None:
        """Add to the digits-processed metric (the numbers' own digits, without padding)."""
        self._digits.inc(digits)


@dataclass(frozen=True)
class Registry:
    """The models being served, by name, and which one answers when a request names none.

    skipped: the faults of the models found but not served (the fault policy above), shown
    by GET /models so an operator sees them without reading the start-up log.
    """

    models: dict[str, LoadedModel]
    default: str
    skipped: list[ModelLoadError] = field(default_factory=list)

    def find(self, name: str | None) -> LoadedModel | None:
        """The named model (the default for None), or None when no such model is served."""
        return self.models.get(self.default if name is None else name)

    @property
    def names(self) -> list[str]:
        return sorted(self.models)


def _read_card(path: Path) -> ModelCard:
    try:
        return ModelCard.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "card"
        raise ModelLoadError(path, f"not a valid model card: {where}: {first['msg']}") from None
    except OSError as exc:
        raise ModelLoadError(path, f"cannot read the card: {exc.strerror}") from None


def _open(card: ModelCard, onnx_path: Path) -> Any:
    try:
        blob = onnx_path.read_bytes()
    except FileNotFoundError:
        raise ModelLoadError(
            onnx_path, "missing: the card names this file but it is not there"
        ) from None
    except OSError as exc:
        raise ModelLoadError(onnx_path, f"cannot read the model file: {exc.strerror}") from None
    digest = hashlib.sha256(blob).hexdigest()
    if digest != card.sha256:
        raise ModelLoadError(
            onnx_path,
            f"sha256 is {digest[:12]}..., the card says {card.sha256[:12]}...: "
            "the file changed after export",
        )
    try:
        return open_session(blob)
    except Exception as exc:  # onnxruntime raises its own untyped errors
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(onnx_path, f"onnxruntime cannot load it: {first_line[:200]}") from None


def _warm_up(card: ModelCard, onnx_path: Path, session: Any) -> None:
    """Run the probe once; check the contract: int64 [b, t] digits -> [b, t, 10] probabilities."""
    probe = encode_batch(_PROBE)  # [2, 11]
    try:
        (probs,) = session.run([card.output_name], {card.input_name: probe})
    except Exception as exc:  # wrong input/output names or dtypes surface here
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(onnx_path, f"breaks the model contract: {first_line[:200]}") from None
    expected = (*probe.shape, 10)
    if probs.shape != expected or probs.dtype != np.float32:
        raise ModelLoadError(
            onnx_path,
            f"breaks the model contract: probabilities are {probs.dtype} {list(probs.shape)}, "
            f"expected float32 {list(expected)}",
        )
    if not np.allclose(probs.sum(axis=-1), 1.0, atol=1e-3):
        raise ModelLoadError(onnx_path, "breaks the model contract: outputs are not probabilities")


def load_model(card_path: Path) -> LoadedModel:
    """Read, verify, open and warm one model; ModelLoadError says what is wrong."""
    return _serve(_read_card(card_path), card_path)


def _serve(card: ModelCard, card_path: Path) -> LoadedModel:
    """Verify, open and warm the model of a card already read."""
    onnx_path = card_path.parent / card.onnx_file
    session = _open(card, onnx_path)
    _warm_up(card, onnx_path, session)
    return LoadedModel(
        card,
        onnx_path,
        session,
        MODEL_RUN_SECONDS.labels(card.name),
        DIGITS_PROCESSED.labels(card.name),
    )


def load_registry(models_dir: Path, default: str) -> Registry:
    """Load every model in models_dir under the fault policy in this module's docstring."""
    start = perf_counter()
    card_paths = sorted(models_dir.glob("*.json")) if models_dir.is_dir() else []
    if not card_paths:
        what = "has no model cards (*.json)" if models_dir.is_dir() else "is not a folder"
        raise ModelLoadError(models_dir, f"{what}; set COUNTER_MODELS_DIR to the models folder")
    models: dict[str, LoadedModel] = {}
    skipped: list[ModelLoadError] = []
    for card_path in card_paths:
        name = card_path.stem  # until the card is read: then the name it gives
        try:
            card = _read_card(card_path)
            name = card.name
            if name in models:
                raise ModelLoadError(card_path, f"a second model named {name!r}")
            model = _serve(card, card_path)
        except ModelLoadError as exc:
            # The default is looked up by card name; a file named after it counts too.
            if default in (card_path.stem, name):
                raise
            log.warning("skipping a model: %s", exc)
            skipped.append(exc)
            continue
        models[model.card.name] = model
    if default not in models:
        found = ", ".join(sorted(models)) or "none"
        raise ModelLoadError(
            models_dir, f"no default model {default!r} (COUNTER_DEFAULT_MODEL); found: {found}"
        )
    MODELS_LOADED.set(len(models))
    log.info(
        "loaded %d model(s) from %s in %.0f ms: %s (default %s)",
        len(models),
        models_dir,
        (perf_counter() - start) * 1000,
        ", ".join(sorted(models)),
        default,
    )
    return Registry(models, default, skipped)
