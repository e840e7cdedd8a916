"""The search for core.carrying's set: a parallelotope around the attractor of 'read a 9' that
the chain of nines enters and that reading a 9 maps into itself.

Its centre is the chain's float64 limit; its axes are the Jacobian's real eigenbasis there (in
which the step is nearly diagonal, so a box in them is mapped into a smaller one); its
half-widths start at the rounding's floor and grow to what the checker's own bound of the
image needs, until the image lies inside. Then the chain's zonotopes are followed until one
lies inside. Only core.decide.check decides: the search may be wrong, never the certificate.
"""

import numpy as np

from core import carrying, copying, zonotope
from core.cells import RnnCell
from core.copying import CertificateError
from core.interval import Array
from core.walk import zonotope_coordinates

SETTLE = 3000  # float64 steps of the chain before its limit is taken
SETTLED = 1e-12  # the chain's last step moves it less than this: it has a limit
FLOOR = 1e-7  # the least half-width along an axis
ROUNDS = 400  # growth rounds of the half-widths
GROWTH = 1.05  # the half-widths kept over what the image needs, so the image fits inside
PATIENCE = 50  # nines followed past the chain's narrowest zonotope before the set grows to it


def _limit(cell: RnnCell) -> Array | None:
    """The float64 chain of nines' limit, when it has one."""
    weights = cell.weights
    shift = weights.w_ih.T[9] + weights.b_ih + weights.b_hh
    state = cell.initial()
    for _ in range(SETTLE):
        state, last = np.tanh(weights.w_hh @ state + shift), state
    return state if float(np.abs(state - last).max()) < SETTLED else None


def _axes(cell: RnnCell, centre: Array) -> Array | None:
    """The real eigenbasis of the step's Jacobian at the centre, unit columns (the unit axes
    when that basis is near singular); None when the step does not contract there."""
    jacobian = (1 - centre**2)[:, None] * cell.weights.w_hh
    values, vectors = np.linalg.eig(jacobian)
    if np.abs(values).max() >= 1:
        return None
    columns, seen = [], set()
    for i, value in enumerate(values):
        if i in seen:
            continue
        if abs(value.imag) < 1e-12:
            columns.append(vectors[:, i].real)
        else:  # a complex pair: its real and imaginary parts span the pair's plane
            pair = int(np.argmin(np.abs(values - value.conjugate())))
            seen.add(pair)
            columns += [vectors[:, i].real, vectors[:, i].imag]
    axes = np.stack(columns, axis=1)
    axes = axes / np.linalg.norm(axes, axis=0)
    if np.linalg.cond(axes) > 1e8:  # a defective Jacobian (saturated units): unit axes
        return np.eye(len(centre))
    return np.asarray(axes, dtype=np.float64)


def _reach(own: copying.Sets, centres: Array, generators: Array) -> Array:
    """How far zonotopes (1, H), (1, H, g) reach along C's axes, in C's half-widths, (H,)."""
    reach: Array = zonotope_coordinates(own, np.zeros(1, np.int64), centres, generators)[0]
    return reach


def _own(centre: Array, shape: Array) -> copying.Sets:
    inverses, limit = copying.checked_inverses(shape[None])
    return copying.Sets(
        centre[None], shape[None], inverses, limit, np.full(1, 19), np.zeros((1, 10), np.int64)
    )


def fit(cell: RnnCell, limit: int, least_nines: int = 0) -> carrying.Set | str:
    """A carrying set entered within `limit` nines (at least least_nines), or why none was
    found. Not checked here beyond its own containment: core.decide.check checks it all."""
    centre = _limit(cell)
    if centre is None:
        return "the chain of nines does not settle (no attractor)"
    axes = _axes(cell, centre)
    if axes is None:
        return "reading a 9 does not contract around the chain's limit"
    try:
        widths = _closed(cell, centre, axes, np.full(cell.state_size, FLOOR))
        if widths is None:
            return "no carrying set maps into itself"
        # the chain's zonotopes settle at a size of their own (their boxed generators): the
        # set grows to hold the narrowest one met, then closes again
        narrowest, nines_at = np.inf, 0
        for nines, chain in enumerate(carrying.chain(cell)):
            own = _own(centre, axes * widths)
            reach = _reach(own, *chain)
            if nines >= least_nines and np.all(reach <= own.limit[0]):
                return carrying.Set(nines, centre, axes * widths)
            if nines >= least_nines and reach.max() < narrowest:
                narrowest, nines_at, needed = float(reach.max()), nines, reach * widths
            if nines - nines_at > PATIENCE or nines >= limit:
                break
        if not np.isfinite(narrowest):
            return f"the chain does not enter the carrying set within {limit} nines"
        widths = _closed(cell, centre, axes, np.maximum(widths, needed * GROWTH))
        if widths is None:
            return "no carrying set that holds the chain maps into itself"
        own = _own(centre, axes * widths)
        if np.all(_reach(own, *carrying.after(cell, nines_at)) <= own.limit[0]):
            return carrying.Set(nines_at, centre, axes * widths)
        return f"the chain's zonotope after {nines_at} nines does not fit the carrying set"
    except CertificateError as exc:
        return str(exc)


def _closed(cell: RnnCell, centre: Array, axes: Array, widths: Array) -> Array | None:
    """Half-widths at least these whose set the checker's bound maps into itself (None:
    none found within ROUNDS)."""
    for _ in range(ROUNDS):
        own = _own(centre, axes * widths)
        image = zonotope.image(
            cell.weights, own.centres, own.shapes, carrying.NINES, cell.activation_error
        )
        need = _reach(own, *image) * widths
        if np.all(need <= widths * own.limit[0]):
            return widths
        widths = np.maximum(widths, need * GROWTH)
    return None
