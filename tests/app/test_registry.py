"""Start-up faults on copies of the shipped models: which refuse to start, which are skipped.

Policy (app.runtime.registry): a fault in the default model, or no model at all, stops the
start with one line naming the file and the reason; a fault in another model skips it with a
warning.
"""

import hashlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from app.runtime.models import ModelLoadError
from app.runtime.registry import load_registry
from app.settings import Settings
from tests.app.client import started
from training.model import Counter, ModelConfig
from training.onnx_graph import export_onnx

Fault = Callable[[Path, str], None]


def break_sha256(folder: Path, name: str) -> None:
    onnx = folder / f"{name}.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")


def drop_onnx(folder: Path, name: str) -> None:
    (folder / f"{name}.onnx").unlink()


def garble_onnx(folder: Path, name: str) -> None:
    """Bytes onnxruntime cannot load, with a card whose sha256 matches them."""
    blob = b"this is not an onnx graph"
    (folder / f"{name}.onnx").write_bytes(blob)
    card_path = folder / f"{name}.json"
    card = json.loads(card_path.read_text())
    card["sha256"] = hashlib.sha256(blob).hexdigest()
    card_path.write_text(json.dumps(card))


def invalidate_card(folder: Path, name: str) -> None:
    card_path = folder / f"{name}.json"
    card = json.loads(card_path.read_text())
    del card["sha256"]
    card_path.write_text(json.dumps(card))


def _replace_onnx(folder: Path, name: str, blob: bytes) -> None:
    """Another graph under the card's name, the card's sha256 updated to match it: what a
    tamperer with write access to the models folder can do."""
    (folder / f"{name}.onnx").write_bytes(blob)
    card_path = folder / f"{name}.json"
    card = json.loads(card_path.read_text())
    card["sha256"] = hashlib.sha256(blob).hexdigest()
    card_path.write_text(json.dumps(card))


def random_weights(folder: Path, name: str) -> None:
    """Random weights of the same shape: loads, keeps the contract, answers 41 -> 332."""
    torch.manual_seed(7)
    path = folder / "random.onnx"
    export_onnx(Counter(ModelConfig(hidden_size=16)), path)
    _replace_onnx(folder, name, path.read_bytes())


def the_other_model(folder: Path, name: str) -> None:
    """The other shipped model's file copied over this one's, the sha256 updated."""
    other = "counter-post" if name == "counter" else "counter"
    _replace_onnx(folder, name, (folder / f"{other}.onnx").read_bytes())


def claim_unbounded(folder: Path, name: str) -> None:
    """A card edited to claim a proof for every carry, certificate included."""
    card_path = folder / f"{name}.json"
    card = json.loads(card_path.read_text())
    card["metrics"]["reliable_carry_length"] = "unbounded"
    card["metrics"]["certificate"]["proved_carry_length"] = "unbounded"
    card["metrics"]["certificate"]["certified"] = True
    card_path.write_text(json.dumps(card))


def fifo_card(folder: Path, name: str) -> None:
    """A FIFO where the card should be: reading it would block forever."""
    path = folder / f"{name}.json"
    path.unlink()
    os.mkfifo(path)


def endless_card(folder: Path, name: str) -> None:
    """The card is a symlink to /dev/zero: reading it would never end."""
    path = folder / f"{name}.json"
    path.unlink()
    path.symlink_to("/dev/zero")


def huge_onnx(folder: Path, name: str) -> None:
    """A model file past COUNTER_MAX_MODEL_BYTES (set to 8192 by these tests)."""
    _replace_onnx(folder, name, b"\0" * 9000)


FAULTS = [
    (break_sha256, "sha256 is"),
    (drop_onnx, "missing: the card names this file"),
    (garble_onnx, "not the graph training exports: not an ONNX model"),
    (invalidate_card, "not a valid model card: sha256"),
    (random_weights, "the card claims"),
    (claim_unbounded, "the card claims a proved reliable carry length of unbounded"),
    (fifo_card, "not a regular file (a FIFO)"),
    (endless_card, "not a regular file (a character device)"),
]


@pytest.mark.parametrize(("fault", "reason"), FAULTS)
def test_a_faulty_default_model_refuses_to_start(
    models_copy: Path, fault: Fault, reason: str
) -> None:
    fault(models_copy, "counter-post")
    with pytest.raises(ModelLoadError) as raised:
        load_registry(models_copy, "counter-post", walked="skip")
    assert "counter-post." in str(raised.value.path)
    assert reason in raised.value.reason


def test_random_weights_under_the_proved_default_card_are_refused(models_copy: Path) -> None:
    random_weights(models_copy, "counter")
    with pytest.raises(ModelLoadError, match="claims a proved reliable carry length of unbounded"):
        load_registry(models_copy, "counter", walked="skip")


def test_the_other_models_weights_under_the_default_card_are_refused(models_copy: Path) -> None:
    """counter-post's file as counter (sha256 updated): its carries are wrong, and the proof
    re-run on it cannot reach the card's claim."""
    the_other_model(models_copy, "counter")
    with pytest.raises(ModelLoadError, match="the card claims a proved reliable carry length"):
        load_registry(models_copy, "counter", walked="skip")


def test_a_proof_whose_allowance_this_onnxruntime_exceeds_is_refused(
    models_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An onnxruntime whose RNN tanh is off by more than the card's proof allows (as another
    build might be): the proof does not hold for the arithmetic that would serve."""
    measured: list[str] = []

    def too_large(op: str) -> float:
        measured.append(op)
        return 1e-3

    monkeypatch.setattr("app.runtime.checks.measured_error", too_large)
    with pytest.raises(ModelLoadError, match=r"RNN kernels are off by 0\.001") as raised:
        load_registry(models_copy, "counter", walked="skip")
    assert "allows each tanh and sigmoid an error of 1e-05" in raised.value.reason
    assert measured == ["RNN"]


def test_the_kernels_are_measured_once_per_op_and_only_for_a_claimed_proof(
    models_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    measured: list[str] = []

    def recorded(op: str) -> float:
        measured.append(op)
        return 1e-7

    monkeypatch.setattr("app.runtime.checks.measured_error", recorded)
    registry = load_registry(models_copy, "counter", walked="skip")
    assert measured == ["RNN"]  # counter-post claims no proof: nothing measured for it
    assert registry.models["counter"].check.activation_error_measured == 1e-7
    assert registry.models["counter-post"].check.activation_error_measured is None


def test_a_model_file_past_the_size_cap_is_refused(models_copy: Path) -> None:
    huge_onnx(models_copy, "counter-post")
    registry = load_registry(models_copy, "counter", max_model_bytes=8192, walked="skip")
    [skipped] = registry.skipped
    assert "more than the limit of 8192 (COUNTER_MAX_MODEL_BYTES)" in skipped.reason


def test_a_card_the_warm_up_contradicts_is_refused(models_copy: Path) -> None:
    """A card whose scan claims no failure where the model fails: the warm-up sees it."""
    card_path = models_copy / "counter-post.json"
    card = json.loads(card_path.read_text())
    assert card["metrics"]["carry_scan"]["failing_runs"], "counter-post is expected to fail"
    card["metrics"]["carry_scan"]["failing_runs"] = []
    card_path.write_text(json.dumps(card))
    registry = load_registry(models_copy, "counter", walked="skip")
    [skipped] = registry.skipped
    assert "the warm-up got" in skipped.reason
    assert "that the card claims right" in skipped.reason


@pytest.mark.parametrize(("fault", "reason"), FAULTS)
def test_another_faulty_model_is_skipped_with_a_warning(
    models_copy: Path, fault: Fault, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    fault(models_copy, "counter-post")
    with caplog.at_level(logging.WARNING, logger="app.runtime.registry"):
        registry = load_registry(models_copy, "counter", walked="skip")
    assert registry.names == ["counter"]
    assert [str(e.path.name) for e in registry.skipped] in (
        ["counter-post.onnx"],
        ["counter-post.json"],
    )
    assert reason in caplog.text
    assert "skipping a model" in caplog.text


def test_models_lists_a_skipped_model_with_its_reason(models_copy: Path) -> None:
    break_sha256(models_copy, "counter-post")
    with started(Settings(models_dir=models_copy)) as client:
        listing = client.get("/models").json()
    assert [card["name"] for card in listing["models"]] == ["counter"]
    [skipped] = listing["skipped"]
    assert skipped["file"] == "counter-post.onnx"
    assert skipped["reason"].startswith("sha256 is")


def test_an_empty_folder_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="has no model cards"):
        load_registry(tmp_path, "counter", walked="skip")


def test_a_missing_default_model_refuses_to_start(models_copy: Path) -> None:
    with pytest.raises(
        ModelLoadError, match=r"no default model 'counter2'.*found: counter, counter-post"
    ):
        load_registry(models_copy, "counter2", walked="skip")


def test_a_fault_in_the_default_under_another_file_name_says_why(models_copy: Path) -> None:
    # The default is found by the name in its card, not by its file name.
    (models_copy / "counter.json").rename(models_copy / "primary.json")
    break_sha256(models_copy, "counter")
    with pytest.raises(ModelLoadError) as raised:
        load_registry(models_copy, "counter", walked="skip")
    assert raised.value.path == models_copy / "counter.onnx"
    assert "sha256 is" in raised.value.reason


def test_every_shipped_model_loads_verified_and_warm(shipped: Path) -> None:
    registry = load_registry(shipped, "counter", walked="skip")
    assert registry.names == ["counter", "counter-post"]
    assert registry.skipped == []
    assert registry.find(None) is registry.models["counter"]


def serve(models_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COUNTER_MODELS_DIR": str(models_dir), "COUNTER_PORT": "1"}
    for item in extra:
        key, value = item.split("=", 1)
        env[key] = value
    return subprocess.run(
        [sys.executable, "-m", "app"], env=env, capture_output=True, text=True, timeout=60
    )


def test_python_m_app_refuses_with_one_line_and_status_2(models_copy: Path) -> None:
    break_sha256(models_copy, "counter")
    done = serve(models_copy)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: cannot start: {models_copy / 'counter.onnx'}: sha256 is")


def test_python_m_app_names_a_bad_setting(shipped: Path) -> None:
    done = serve(shipped, "COUNTER_MAX_DIGITS=lots")
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: COUNTER_MAX_DIGITS:")


def _edit_card(folder: Path, name: str, edit: Callable[[dict[str, object]], object]) -> None:
    path = folder / f"{name}.json"
    card = json.loads(path.read_text())
    edit(card)
    path.write_text(json.dumps(card))


def test_a_card_whose_carry_attractor_the_weights_contradict_is_refused(
    models_copy: Path,
) -> None:
    """counter-post's card claiming a carry attractor: the service re-derives it and refuses."""

    def claim_attractor(card: dict[str, object]) -> None:
        card["dynamics"] = {
            "carry_attractor": True,
            "predicted_exact_run": "unbounded",
            "lost_at": None,
            "figure": None,
        }

    _edit_card(models_copy, "counter-post", claim_attractor)
    with pytest.raises(ModelLoadError, match="carry_attractor is True, but the loaded weights"):
        load_registry(models_copy, "counter-post", walked="skip")


def test_carry_attractor_is_re_derived_and_a_card_without_it_still_loads(
    models_copy: Path,
) -> None:
    _edit_card(models_copy, "counter-post", lambda card: card.pop("dynamics", None))
    registry = load_registry(models_copy, "counter", walked="skip")
    assert registry.models["counter-post"].card.dynamics is None
    assert registry.models["counter-post"].check.carry_attractor is None
    assert registry.models["counter"].check.carry_attractor is True
