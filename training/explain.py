"""`python -m training explain MODEL`: why the model keeps or loses the carry (core.dynamics),
as text, as JSON, as a figure (the chain's margin by step; the chain and the fixed points in
the plane of their two main directions), and as the model card's `dynamics` field.
"""

from pathlib import Path
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from core.card import CarryDynamics, ModelCard
from core.carry_map import Array
from core.dynamics import Dynamics, analyse
from core.fixed_points import FixedPoint
from core.weights import recurrent_weights_from_onnx

DOC_BEGIN = "<!-- explain-models: written by python -m training explain --doc; do not edit -->"
DOC_END = "<!-- /explain-models -->"
SHOWN_STEPS = 100  # chain steps listed in the JSON (the whole chain is analysed)


def _number(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 4)


def _point(point: FixedPoint, chain_end: np.ndarray) -> dict[str, Any]:
    return {
        "map": point.digit,
        "readout": point.readout,
        "stable": point.stable,
        "spectral_radius": round(point.spectral_radius, 4),
        "eigenvalues": [[round(e.real, 4), round(e.imag, 4)] for e in point.eigenvalues[:4]],
        "output_margin": round(point.output_margin, 4),
        "spend_margin": _number(point.spend_margin),
        "switch_margin": _number(point.switch_margin),
        "reads_out_carry": point.carries if point.digit == 9 else None,
        "basin_share": point.basin_hits,
        "distance_from_chain_end": round(float(np.max(np.abs(chain_end - point.state))), 4),
    }


def figure_name(model: Path) -> str:
    return f"{model.name}-carry.png"


def predicted(dynamics: Dynamics) -> int | Literal["unbounded"]:
    run = dynamics.predicted_exact_run
    return "unbounded" if run is None else run


def report(model: Path, dynamics: Dynamics, figure: str | None) -> dict[str, Any]:
    """The JSON `explain --json` prints."""
    chain, exit_ = dynamics.chain, dynamics.exit
    shown = min(SHOWN_STEPS, chain.states.shape[0])
    end = chain.states[-1]
    nearest = dynamics.nine_points[exit_.nearest] if dynamics.nine_points else None
    return {
        "model": model.name,
        "carry_attractor": dynamics.carry_attractor,
        "predicted_longest_exact_run": predicted(dynamics),
        "chain": {
            "steps": chain.states.shape[0] - 1,
            "lost_at": chain.lost_at,
            "margin": [_number(m) for m in chain.margin[:shown]],
            "output_margin": [_number(m) for m in chain.output_margin[:shown]],
            "output_rival": chain.output_rival[:shown].tolist(),
            "spend_margin": [_number(m) for m in chain.spend_margin[:shown]],
            "spend_digit": chain.spend_digit[:shown].tolist(),
            "switch_margin": [_number(m) for m in chain.switch_margin[:shown]],
            "final_margin": _number(float(chain.margin[-1])),
        },
        "nine_map": [_point(p, end) for p in dynamics.nine_points],
        "copying_maps": [_point(p, end) for p in dynamics.copy_points],
        "exit": {
            "step": exit_.step,
            "nearest_nine_fixed_point": None
            if nearest is None
            else {"readout": nearest.readout, "stable": nearest.stable},
            "distance_to_nearest": _number(exit_.distance),
            "slowest_step": exit_.slowest_step,
            "slowest_speed": _number(exit_.slowest_speed),
            "slow_eigenvalue": [
                round(exit_.slow_eigenvalue.real, 4),
                round(exit_.slow_eigenvalue.imag, 4),
            ],
            "drift_alignment": round(exit_.drift_alignment, 4),
        },
        "figure": figure,
    }


def text(info: dict[str, Any]) -> str:
    """The JSON report in a few sentences."""
    chain, exit_ = info["chain"], info["exit"]
    margins = ", ".join(f"{m:.2f}" for m in chain["margin"][:12] if m is not None)
    lines = [
        f"{info['model']}: carry_attractor {str(info['carry_attractor']).lower()}, predicted "
        f"longest exact run {info['predicted_longest_exact_run']}",
        f"  carry margin after 0, 1, 2, ... nines: {margins}, ... (after "
        f"{chain['steps']}: {chain['final_margin']})",
    ]
    for point in info["nine_map"]:
        kind = "stable" if point["stable"] else "unstable"
        lines.append(
            f"  9-map fixed point: {kind} (|eig| max {point['spectral_radius']}), reads "
            f"{point['readout']} (margin {point['output_margin']}), carries: "
            f"{str(point['reads_out_carry']).lower()}"
        )
    copies = sorted({(p["map"], p["readout"], p["spectral_radius"]) for p in info["copying_maps"]})
    lines.append(
        "  copying maps' stable points (map -> readout, |eig| max): "
        + ", ".join(f"{d}->{r} {s}" for d, r, s in copies)
    )
    if exit_["step"] is None:
        lines.append("  the chain never loses the carry within the steps followed")
    else:
        lines.append(
            f"  the carry is lost at {exit_['step']} nines, {exit_['distance_to_nearest']} from "
            f"the nearest 9-map fixed point (reads {exit_['nearest_nine_fixed_point']['readout']});"
            f" slowest at step {exit_['slowest_step']} (speed {exit_['slowest_speed']}, leading "
            f"eigenvalue {exit_['slow_eigenvalue'][0]}, drift alignment "
            f"{exit_['drift_alignment']})"
        )
    if info["figure"]:
        lines.append(f"  wrote {info['figure']}")
    return "\n".join(lines)


def plot(path: Path, title: str, dynamics: Dynamics) -> None:
    """Left: the carry margin by step. Right: the chain and the fixed points, projected."""
    chain = dynamics.chain
    lost = chain.lost_at
    last = min(chain.states.shape[0] - 1, max(40, 3 * lost if lost is not None else 40))
    steps = np.arange(last + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    left.plot(steps, chain.margin[: last + 1], "k-", lw=2, label="carry margin (the smaller)")
    left.plot(steps[1:], chain.output_margin[1 : last + 1], "C0--", label="0 over rival, reading 9")
    left.plot(steps, chain.spend_margin[: last + 1], "C1:", label="d+1 over rival, next digit d")
    left.plot(steps, chain.switch_margin[: last + 1], "C2-.", label="t over rival, the digit after")
    left.axhline(0, color="grey", lw=0.8)
    if lost is not None:
        left.axvline(lost, color="C3", lw=1, label=f"carry lost at {lost} nines")
    left.set_xlabel("nines read with the carry on (j)")
    left.set_ylabel("logit margin of the right digit")
    left.set_title("The carry chain's margin")
    left.legend(fontsize=8)

    nine = np.array([p.state for p in dynamics.nine_points]).reshape(-1, chain.states.shape[1])
    copies = np.array([p.state for p in dynamics.copy_points]).reshape(-1, chain.states.shape[1])
    cloud = np.concatenate([chain.states[: last + 1], nine, copies])
    centre = cloud.mean(axis=0)
    _, _, axes = np.linalg.svd(cloud - centre, full_matrices=False)

    def project(states: Array) -> Array:
        flat: Array = (states - centre) @ axes[:2].T
        return flat

    path_2d = project(chain.states[: last + 1])
    right.plot(path_2d[:, 0], path_2d[:, 1], "k.-", lw=0.8, ms=4, label="carry chain")
    right.annotate("h0", path_2d[0], fontsize=8)
    if lost is not None:
        right.plot(*path_2d[lost], "o", color="C3", ms=9, mfc="none", label="carry lost")
    for point, xy in zip(dynamics.nine_points, project(nine), strict=True):
        colour = "C2" if point.carries else "C3"
        face = colour if point.stable else "none"
        right.plot(*xy, "*", ms=16, color=colour, mfc=face)
        kind = "stable" if point.stable else "unstable"
        right.annotate(
            f"9-map {kind}, reads {point.readout}",
            xy,
            fontsize=8,
            xytext=(6, 6),
            textcoords="offset points",
        )
    if copies.size:
        flat = project(copies)
        right.plot(flat[:, 0], flat[:, 1], "s", color="C7", ms=5, label="copying maps' points")
        for point, xy in zip(dynamics.copy_points, flat, strict=True):
            right.annotate(str(point.digit), xy, fontsize=7, color="C7")
    right.set_title("States in their two main directions (PCA)")
    right.legend(fontsize=8, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def explain(model: Path, figure_dir: Path | None) -> tuple[Dynamics, dict[str, Any]]:
    """Analyse MODEL.onnx; draw the figure into figure_dir when given."""
    weights = recurrent_weights_from_onnx(model.with_suffix(".onnx"))
    dynamics = analyse(weights)
    figure = None
    if figure_dir is not None:
        figure = figure_name(model)
        verdict = "carry attractor" if dynamics.carry_attractor else "no carry attractor"
        plot(
            figure_dir / figure,
            f"{model.name}: {verdict}, carry kept through {predicted(dynamics)} nines",
            dynamics,
        )
    return dynamics, report(model, dynamics, figure)


def card_field(dynamics: Dynamics, figure: str | None) -> CarryDynamics:
    return CarryDynamics(
        carry_attractor=dynamics.carry_attractor,
        predicted_exact_run=predicted(dynamics),
        lost_at=dynamics.chain.lost_at,
        figure=figure,
    )


def write_card(model: Path, dynamics: Dynamics, figure: str | None) -> None:
    """Set the card's `dynamics` and list the figure among its plots."""
    path = model.with_suffix(".json")
    card = ModelCard.model_validate_json(path.read_text())
    plots = [p for p in card.plots if p != figure] + ([figure] if figure else [])
    card = card.model_copy(update={"dynamics": card_field(dynamics, figure), "plots": plots})
    path.write_text(card.model_dump_json(indent=2, exclude_unset=True) + "\n")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def doc_section(reports: list[tuple[dict[str, Any], Dynamics]]) -> str:
    """The figures docs/why-the-carry-fails.md quotes, per model, between markers."""
    lines = [
        DOC_BEGIN,
        "| model | carry_attractor | carry margin after j = 0, 1, 2, 3, 4, 5, 6, 8, 10, 20 "
        "nines | lost at (nines) | after 1000 nines | RMS of h along the chain (min / max) "
        "| stable fixed points of the 9-map: reads (spectral radius) |",
        "|---|---|---|---|---|---|---|",
    ]
    for info, dynamics in reports:
        chain = dynamics.chain
        margin = [_number(float(chain.margin[j])) for j in (0, 1, 2, 3, 4, 5, 6, 8, 10, 20)]
        rms = np.sqrt(np.mean(chain.states[1:] ** 2, axis=1))
        points = ", ".join(
            f"{p['readout']} ({p['spectral_radius']:.3f})" for p in info["nine_map"] if p["stable"]
        )
        lost = info["chain"]["lost_at"]
        lines.append(
            f"| {info['model']} | {str(info['carry_attractor']).lower()} "
            f"| {', '.join(_fmt(m) for m in margin)} | {'never' if lost is None else lost} "
            f"| {_fmt(info['chain']['final_margin'])} | {rms.min():.2f} / {rms.max():.2f} "
            f"| {points} |"
        )
    lines.append(DOC_END)
    return "\n".join(lines) + "\n"
