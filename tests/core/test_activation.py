"""The tanh and sigmoid errors of the installed onnxruntime, measured through the kernels of the
RNN, GRU and LSTM ops themselves."""

import numpy as np
import pytest

from core.activation import (
    KERNELS,
    SATURATED,
    SPAN,
    KernelProbe,
    TanhProbe,
    exact,
    grid,
    measured_error,
    measured_errors,
    measured_sigmoid_error,
    measured_tanh_error,
)
from core.certify import DEFAULT_TANH_ERROR


def test_the_probe_computes_tanh_through_the_rnn_op() -> None:
    values = np.array([[-3.0, -0.5, 0.0], [1e-30, 0.25, 25.0]], dtype=np.float32)
    got = TanhProbe().tanh(values)
    assert got.shape == values.shape
    np.testing.assert_allclose(got, np.tanh(values.astype(np.float64)), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_each_probe_computes_its_activation(kernel: str) -> None:
    values = np.array([[-7.0, -0.5, 0.0, 1e-30], [0.25, 1.5, 4.0, 30.0]], dtype=np.float32)
    probe = KernelProbe(kernel)
    got = probe(values)
    assert got.shape == values.shape
    want = exact(probe.function, values.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    # a value no other activation gives: the probe really applies its own function
    other = exact("tanh" if probe.function == "sigmoid" else "sigmoid", np.array([-1.0]))
    assert abs(float(probe(np.array([-1.0], dtype=np.float32))[0]) - other[0]) > 0.5


def test_the_probes_saturated_gates_are_exactly_0_and_1() -> None:
    """The probes hold gates shut or open with SATURATED pre-activations, and the LSTM's
    sigmoid probe keeps its cell at SPAN: exact only if these give exactly 0, 1 and 1."""
    for kernel in ("GRU update gate sigmoid", "LSTM gate sigmoid"):
        gate = KernelProbe(kernel)(np.array([-SATURATED, SATURATED], dtype=np.float32))
        assert gate.tolist() == [0.0, 1.0], kernel
    assert KernelProbe("LSTM cell tanh")(np.array([SPAN], dtype=np.float32)).tolist() == [1.0]


def test_the_grid_covers_both_signs_tiny_values_and_saturation() -> None:
    values = grid(1001)
    assert values.min() == -20
    assert values.max() == 20
    assert np.any((values > 0) & (values < 1e-30))
    assert np.any((values < 0) & (values > -1e-30))


def test_the_installed_onnxruntime_is_well_within_the_certificates_allowance() -> None:
    error = measured_tanh_error()
    assert 0 < error < DEFAULT_TANH_ERROR / 10
    sigmoid = measured_sigmoid_error()
    assert 0 < sigmoid < DEFAULT_TANH_ERROR / 10


def test_each_function_reports_its_worst_kernel() -> None:
    errors = measured_errors(1 << 14)
    assert set(errors) == set(KERNELS)
    for function, measured in (("tanh", measured_tanh_error), ("sigmoid", measured_sigmoid_error)):
        worst = max(e for k, e in errors.items() if KernelProbe(k).function == function)
        assert measured(1 << 14) == worst


def test_each_op_is_checked_by_its_own_kernels() -> None:
    errors = measured_errors(1 << 14)
    for op in ("RNN", "GRU", "LSTM"):
        own = [error for kernel, error in errors.items() if kernel.startswith(op + " ")]
        assert measured_error(op, 1 << 14) == max(own)
    with pytest.raises(ValueError, match="no probes for the op 'Elman'"):
        measured_error("Elman")
