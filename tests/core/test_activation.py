"""The tanh error of the installed onnxruntime, measured through the RNN kernel itself."""

import numpy as np

from core.activation import TanhProbe, grid, measured_tanh_error
from core.certify import DEFAULT_TANH_ERROR


def test_the_probe_computes_tanh_through_the_rnn_op() -> None:
    values = np.array([[-3.0, -0.5, 0.0], [1e-30, 0.25, 25.0]], dtype=np.float32)
    got = TanhProbe().tanh(values)
    assert got.shape == values.shape
    np.testing.assert_allclose(got, np.tanh(values.astype(np.float64)), rtol=0, atol=1e-6)


def test_the_grid_covers_both_signs_tiny_values_and_saturation() -> None:
    values = grid(1001)
    assert values.min() == -20
    assert values.max() == 20
    assert np.any((values > 0) & (values < 1e-30))
    assert np.any((values < 0) & (values > -1e-30))


def test_the_installed_onnxruntime_is_well_within_the_certificates_allowance() -> None:
    error = measured_tanh_error()
    assert 0 < error < DEFAULT_TANH_ERROR / 10
