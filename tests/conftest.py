"""Which tests run where. A test module that needs torch (tests/torch_stack.py reads that from
its imports) is marked `torch`; where torch is not installed (`make check`'s virtualenv) it is
not collected at all, and the header says how many were left to `make test`.

Where torch is installed, its CPU kernels are pinned to 'portable' for every test in this
process, as the training CLI does: torch fixes its kernels at its first operation, so the pin
comes after collection (which imports torch but runs nothing) and before any test. Tests that
need other kernels run the CLI in a subprocess with its own environment.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

from tests.torch_stack import ROOT, needs_torch

TORCH_INSTALLED = importlib.util.find_spec("torch") is not None


def _needs_torch(path: Path) -> bool:
    return path.name.startswith("test_") and path.suffix == ".py" and needs_torch(path)


def pytest_report_header(config: pytest.Config) -> str | None:
    if TORCH_INSTALLED:
        return None
    left = sum(_needs_torch(path) for path in (ROOT / "tests").rglob("test_*.py"))
    return f"torch is not installed: {left} test modules that need it are left to `make test`"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if not TORCH_INSTALLED and _needs_torch(collection_path):
        return True
    return None  # pytest's own rules decide


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _needs_torch(item.path):
            item.add_marker(pytest.mark.torch)


def pytest_collection_finish(session: pytest.Session) -> None:
    if "torch" in sys.modules:
        from training import kernels

        kernels.pin("portable")
        # Raises if a test module ran a torch operation at import, before the pin.
        kernels.describe("portable", threads=1)
