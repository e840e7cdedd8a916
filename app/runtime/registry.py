"""The model registry: load every models/<name>.json card, and serve only what passes the
checks (app.runtime.checks) on the bytes actually loaded.

Fault policy: a fault in the default model (the one whose card name, or whose card's file name,
is COUNTER_DEFAULT_MODEL), a folder with no card, or no default model: loading raises
ModelLoadError naming the file and the reason, and `python -m app` exits with that one line and
status 2. A fault in any other model, foreseen or not, skips it with a one-line warning;
GET /models lists it.
"""

import hashlib
import logging
from pathlib import Path
from time import perf_counter
from typing import Any

import onnxruntime as ort
from pydantic import ValidationError

from app.metrics import DIGITS_PROCESSED, MODEL_RUN_SECONDS, MODELS_LOADED
from app.runtime.checks import (
    ActivationErrors,
    check_contract,
    check_decision,
    check_graph,
    first_line,
    read_file,
    recheck_attractor,
    recheck_proof,
    served_card,
    warm_up,
)
from app.runtime.models import LoadedModel, ModelLoadError, Registry, ServingCheck
from app.settings import WalkedCertificates
from core.card import ModelCard
from core.session import open_session

log = logging.getLogger(__name__)

CARD_BYTES = 1 << 20  # a card is a few KB


def _read_card(path: Path) -> ModelCard:
    blob = read_file(path, CARD_BYTES, "a model card's size", "the card is gone")
    try:
        return ModelCard.model_validate_json(blob)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])  # none: a check of the whole card
        detail = f"{where}: {first['msg']}" if where else first["msg"]
        raise ModelLoadError(path, f"not a valid model card: {detail}") from None


def _open(card: ModelCard, onnx_path: Path, cap: int) -> tuple[bytes, Any]:
    if Path(card.onnx_file).name != card.onnx_file or card.onnx_file in ("", ".", ".."):
        raise ModelLoadError(onnx_path, "the card's onnx_file must be a file name beside it")
    blob = read_file(onnx_path, cap, "COUNTER_MAX_MODEL_BYTES", "the card names this file")
    digest = hashlib.sha256(blob).hexdigest()
    if digest != card.sha256:
        raise ModelLoadError(
            onnx_path,
            f"sha256 is {digest[:12]}..., the card says {card.sha256[:12]}...: "
            "the file changed after export",
        )
    check_graph(card, onnx_path, blob)  # before onnxruntime sees the bytes
    try:
        return blob, open_session(blob)
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelLoadError(onnx_path, f"onnxruntime cannot load it: {first_line(exc)}") from None


def load_model(
    card_path: Path,
    max_model_bytes: int,
    errors: ActivationErrors | None = None,
    walked: WalkedCertificates = "check",
) -> LoadedModel:
    """Read, verify, open, re-prove and warm up one model; ModelLoadError says what is wrong.
    walked: COUNTER_WALKED_CERTIFICATES (app.runtime.checks.check_decision)."""
    card = _read_card(card_path)
    return _serve(card, card_path, max_model_bytes, errors or ActivationErrors(), walked)


def _serve(
    card: ModelCard,
    card_path: Path,
    max_model_bytes: int,
    errors: ActivationErrors,
    walked: WalkedCertificates,
) -> LoadedModel:
    onnx_path = card_path.parent / card.onnx_file
    blob, session = _open(card, onnx_path, max_model_bytes)
    check_contract(card, onnx_path, session)
    proof = recheck_proof(card, onnx_path, blob, errors)
    decision = check_decision(card, onnx_path, blob, session, errors, walked)
    card = served_card(card, decision)
    answers = warm_up(card, onnx_path, session)
    attractor = recheck_attractor(card, onnx_path, blob)
    check = ServingCheck(
        onnxruntime=ort.__version__,
        activation_error_measured=proof.activation_error,
        proved_carry_length=proof.proved,
        proof_margin=proof.margin,
        proof_seconds=round(proof.seconds, 4),
        warm_up_answers=answers,
        decision=decision,
        carry_attractor=attractor,
    )
    return LoadedModel(
        card,
        onnx_path,
        session,
        check,
        MODEL_RUN_SECONDS.labels(card.name),
        DIGITS_PROCESSED.labels(card.name),
    )


def _serve_checked(
    card: ModelCard,
    card_path: Path,
    max_model_bytes: int,
    errors: ActivationErrors,
    walked: WalkedCertificates,
) -> LoadedModel:
    """_serve, with any fault it did not foresee (a card figure the proof cannot use) made a
    ModelLoadError: one line, so a bad non-default model is skipped, not a crash at start."""
    try:
        return _serve(card, card_path, max_model_bytes, errors, walked)
    except ModelLoadError:
        raise
    except Exception as exc:  # a fault of this model, not of the service
        what = f"{type(exc).__name__}: {first_line(exc)}"
        raise ModelLoadError(card_path, f"cannot be checked: {what}") from None


def load_registry(
    models_dir: Path,
    default: str,
    max_model_bytes: int = 64 << 20,
    walked: WalkedCertificates = "check",
) -> Registry:
    """Load every model in models_dir under the fault policy in this module's docstring;
    walked: COUNTER_WALKED_CERTIFICATES (app.runtime.checks.check_decision)."""
    start = perf_counter()
    card_paths = sorted(models_dir.glob("*.json")) if models_dir.is_dir() else []
    if not card_paths:
        what = "has no model cards (*.json)" if models_dir.is_dir() else "is not a folder"
        raise ModelLoadError(models_dir, f"{what}; set COUNTER_MODELS_DIR to the models folder")
    errors = ActivationErrors()
    models: dict[str, LoadedModel] = {}
    skipped: list[ModelLoadError] = []
    for card_path in card_paths:
        name = card_path.stem  # until the card is read: then the name it gives
        try:
            card = _read_card(card_path)
            name = card.name
            if name in models:
                raise ModelLoadError(card_path, f"a second model named {name!r}")
            model = _serve_checked(card, card_path, max_model_bytes, errors, walked)
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
        "loaded %d model(s) from %s in %.0f ms: %s (default %s; onnxruntime %s)",
        len(models),
        models_dir,
        (perf_counter() - start) * 1000,
        ", ".join(sorted(models)),
        default,
        ort.__version__,
    )
    return Registry(models, default, skipped)
