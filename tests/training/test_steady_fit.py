"""The steady fit (training.walk_fit.fit_steady): sets fitted to the copying states past the
carry's transient, keyed by three digits, with the states that absorb the carry walked into
them; what it returns is a certificate the one-pass check accepts, from its file too."""

from core import decide
from core.certify import DEFAULT_TANH_ERROR
from core.copying import Invariant
from tests.training.hand_counter import leaky_counter
from training.walk_fit import ENTRY_STEPS, STEADY_KEYS, fit_steady


def test_the_steady_fit_finds_a_certificate_that_walks_its_entries() -> None:
    weights = leaky_counter()
    found = fit_steady(weights, 2)
    assert not isinstance(found, str), found
    invariant, checked = found
    assert (invariant.entry_steps, invariant.key_digits) == (ENTRY_STEPS, STEADY_KEYS)
    assert checked.proved == 2
    assert checked.margin > 0
    read = Invariant.from_bytes(invariant.to_bytes())
    assert decide.check(weights, read, DEFAULT_TANH_ERROR).proved == 2
