"""A hand-built counter (tests/training/hand_counter.py) as a model the service can load: its
graph exported beside a card made from a shipped one, with its own name, file, sha256 and the
architecture the file really has (the service re-derives it and refuses a card that differs)."""

import hashlib
import json
from pathlib import Path
from typing import Any

from core.canonical import check_canonical
from core.weights import RnnWeights
from tests.training.hand_counter import export_weights


def hand_card(folder: Path, name: str, weights: RnnWeights, template: Path) -> dict[str, Any]:
    """Export `weights` as folder/NAME.onnx and return its card (not yet written): `template`'s
    card, named for it, with no plots."""
    onnx_path = folder / f"{name}.onnx"
    export_weights(weights, str(onnx_path))
    card: dict[str, Any] = json.loads(template.read_text())
    card.update(
        name=name,
        onnx_file=onnx_path.name,
        sha256=hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        plots=[],
    )
    facts = check_canonical(onnx_path.read_bytes())
    card["architecture"].update(hidden_size=facts.hidden_size, parameters=facts.parameters)
    return card
