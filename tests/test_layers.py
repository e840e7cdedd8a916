"""The arrows run one way: training -> core <- app. Neither side imports the other, and the
service never imports torch or onnx (it reads graphs with core.onnx_reader), so `make serve`
installs neither."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "app": {"torch", "onnx", "training"},
    "core": {"torch", "onnx", "training", "app", "fastapi", "starlette", "uvicorn"},
    "training": {"app", "fastapi", "starlette", "uvicorn"},
}


def _imports(path: Path) -> set[str]:
    """Top-level package of every module the file imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_across_the_layers(package: str) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & FORBIDDEN[package])
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {file: names for file, names in wrong.items() if names} == {}
