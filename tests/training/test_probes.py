"""The probe files the service measures its activations with hold the graphs training builds."""

from pathlib import Path

import onnx
import pytest

from core.activation import KERNELS, PROBES
from training.probes import GRAPHS, write


def test_every_kernel_has_a_probe_graph() -> None:
    assert set(GRAPHS) == set(KERNELS)


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_each_shipped_probe_file_is_the_graph_training_builds(kernel: str) -> None:
    shipped = onnx.load(str(PROBES / KERNELS[kernel].file))
    assert shipped.graph == GRAPHS[kernel]().graph, "run python -m training.probes"


def test_write_gives_the_files_core_reads(tmp_path: Path) -> None:
    written = write(tmp_path)
    assert sorted(p.name for p in written) == sorted(k.file for k in KERNELS.values())
    for path in written:
        assert onnx.load(str(path)).graph == onnx.load(str(PROBES / path.name)).graph
