"""The carrying phase of core.decide's certificate: the chain of nines as zonotopes, and the
carrying set that covers runs of nines of every length.

A run of nines is one trajectory from the zero state, s_(j+1) = F_9(s_j). The certificate
follows it as a zonotope Z_j (`chain`) for j <= m. When the chain settles on an attractor of
F_9, one parallelotope C = c + A [-1, 1]^H around the attractor closes the argument for every
j > m: the check proves, with the copying sets' outward rounding and Krawczyk containment,

- Z_m lies in C, so the state after m nines does;
- C read with a 9 lies in C, so by induction every state after m or more nines does;
- digit 0 (the carry's right digit) wins everywhere on C;
- C read with each absorbing digit d in 0-8 reads d + 1 everywhere on the image;
- those images read with each digit e lie in the copying set of the key of '9...9 d e'. Every
  key is at most m + 2 digits deep, so a history of m or more nines, d and e has that key.

The copying sets' own check (one step or walked) then covers every digit after those, as it
does for runs of at most m nines, so every input of every length is answered right.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from core import zonotope
from core.cells import RnnCell
from core.copying import (
    MAX_DEPTH,
    CertificateError,
    Ints,
    Sets,
    checked_inverses,
    coordinates,
    depths,
    digit_name,
    key_index,
    readout,
)
from core.interval import Array
from core.walk import Roots, roots_of, walk, zonotope_coordinates

# the chain's zonotope keeps this many generators exactly (the rest boxed), so a long run of
# nines costs the same per nine
CHAIN_GENERATORS = 32
NINES = np.full(1, 9, dtype=np.int64)  # the digit read while carrying
METHOD = "; the chain of nines then held by a carrying set that reading a 9 maps into itself"


def chain(cell: RnnCell) -> Iterator[tuple[Array, Array]]:
    """Z_0, Z_1, ...: zonotopes (1, H), (1, H, g) holding the state after j nines, as the
    deployed steps reach it from the zero state."""
    centre, generators = zonotope.point(cell.initial())
    while True:
        yield centre, generators
        centre, generators = zonotope.image(
            cell.weights, centre, generators, NINES, cell.activation_error
        )
        generators = zonotope.reduce(generators, CHAIN_GENERATORS)


def after(cell: RnnCell, nines: int) -> tuple[Array, Array]:
    """Z_nines, the chain's zonotope after that many nines."""
    for j, state in enumerate(chain(cell)):
        if j == nines:
            return state
    raise AssertionError("the chain is endless")


@dataclass(frozen=True)
class Set:
    """A carrying set C = centre + shape [-1, 1]^H, entered after `nines` nines."""

    nines: int  # m
    centre: Array  # (H,)
    shape: Array  # (H, H)


@dataclass(frozen=True)
class Closed:
    """What the carrying set's check established."""

    margin: float  # the least logit gap of the right digit on C and its absorbed images
    worst: float  # the largest containment coordinate minus its limit met (below 0)


def absorbed_roots(absorbed: tuple[Array, Array], keys: Ints) -> Roots:
    """The carrying set's images under each absorbing digit d, (9, H) and (9, H, g), as roots
    of a walk from the key of '9...9 d' (every digit nines, then d; `keys` the certificate's
    codes)."""
    unit = 10**MAX_DEPTH
    histories = [(unit - 10 + d) % unit for d in range(9)]
    names = [f"the carrying set read with {d}" for d in range(9)]
    return roots_of(keys, [absorbed[0]], [absorbed[1]], histories, names)


def absorbing(cell: RnnCell, carry: Set) -> tuple[Array, Array]:
    """The carrying set's images under each absorbing digit d in 0-8, (9, H) and (9, H, g)."""
    centre, shape = carry.centre[None], carry.shape[None]
    return zonotope.image(cell.weights, centre, shape, np.arange(9), cell.activation_error)


def check(cell: RnnCell, carry: Set, sets: Sets, entry_steps: int = 0) -> Closed:
    """Check that the carrying set closes the chain for every run of at least carry.nines
    nines (the module's argument); CertificateError says where it does not. entry_steps > 0
    (core.copying.Invariant's): its images under each d are walked from the key of '9...9 d'
    for up to that many digits, instead of their images under e lying in their keys' sets."""
    size = cell.state_size
    if carry.centre.shape != (size,) or carry.shape.shape != (size, size):
        raise CertificateError(f"the carrying set is not a parallelotope of {size} units")
    deepest = int(depths(sets.keys).max())
    if deepest > carry.nines + 2:
        raise CertificateError(
            f"a key of {deepest} digits is deeper than the carrying set's {carry.nines} nines "
            "and two digits: the key after a long run is not determined"
        )
    centre, shape = carry.centre[None], carry.shape[None]
    inverses, limits = checked_inverses(shape)
    # C as a family of one set, so the copying sets' containment measures it
    own = Sets(centre, shape, inverses, limits, np.full(1, 19), np.zeros((1, 10), np.int64))
    weights, error = cell.weights, cell.activation_error

    def beyond(centres: Array, generators: Array) -> float:
        """How far zonotopes (1, H), (1, H, g) reach out of C: <= 0 inside."""
        coordinate = zonotope_coordinates(own, np.zeros(1, np.int64), centres, generators)
        return float(coordinate.max() - own.limit[0])

    kept = beyond(*zonotope.image(weights, centre, shape, NINES, error))
    if kept > 0:
        raise CertificateError(
            f"the carrying set read with a 9 leaves itself (by {kept:.3g} of its size)"
        )
    entered = beyond(*after(cell, carry.nines))
    if entered > 0:
        raise CertificateError(
            f"the chain's states after {carry.nines} nines are not inside the carrying set"
        )
    slack, gap = readout(cell, centre, shape, np.zeros(1, dtype=np.int64))
    if slack[0] <= 0:
        raise CertificateError(
            f"on the carrying set digit 0 is not sure to win (least logit gap {gap[0]:.3g})"
        )
    margin = float(gap[0])
    absorbed = absorbing(cell, carry)
    slack, gap = readout(cell, *absorbed, np.arange(1, 10))
    if slack.min() <= 0:
        worst = int(slack.argmin())
        raise CertificateError(
            f"the carrying set read with {worst} is not sure to give {worst + 1}"
        )
    margin = min(margin, float(gap.min()))
    if entry_steps:
        walked = walk(cell, sets, entry_steps, roots=absorbed_roots(absorbed, sets.keys))
        if walked.failure is not None:
            raise CertificateError(walked.failure)
        return Closed(min(margin, walked.margin), max(entered, kept, walked.worst))
    copy = zonotope.image(
        weights, absorbed[0][:, None], absorbed[1][:, None], np.arange(10), error
    )  # (9, 10, H)
    lo, hi = zonotope.hull(*copy)
    unit = 10**MAX_DEPTH
    tails = np.asarray(
        [(unit - 100 + d * 10 + e) % unit for d in range(9) for e in range(10)], dtype=np.int64
    )  # every digit nines, then d and e
    keys = key_index(sets.keys, tails)
    outside = coordinates(sets, keys, lo.reshape(-1, size), hi.reshape(-1, size)).max(axis=1)
    outside = outside - sets.limit[keys]
    if outside.max() > 0:
        where = int(outside.argmax())
        raise CertificateError(
            f"the carrying set read with {where // 10} and {where % 10} is not inside the set "
            f"of key {digit_name(int(sets.keys[keys[where]]))}"
        )
    return Closed(margin, max(entered, kept, float(outside.max())))
