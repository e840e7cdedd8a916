"""The arrows run one way: training -> core <- app. Neither side imports the other, and the
service never imports torch or onnx (it reads graphs with core.onnx_reader), so `make serve`
installs neither.

Inside app/ the layers run one way too: the routes (app.api) -> the HTTP layer (app.http) -> the
model runtime (app.runtime), with app.grpc a second way in beside app.http; app.main wires them.
The runtime imports no web framework, so it runs the same under gRPC, Ray Serve or a script."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WEB = {"fastapi", "starlette", "uvicorn"}
FORBIDDEN = {
    "app": {"torch", "onnx", "training"},
    "app/runtime": {*WEB, "app.http", "app.api", "app.grpc", "app.main"},
    "app/http": {"app.api", "app.grpc", "app.main"},
    "app/api": {"app.grpc", "app.main"},
    "core": {"torch", "onnx", "training", "app", *WEB},
    "training": {"app", *WEB},
}


def _imports(path: Path) -> set[str]:
    """Every module the file imports, by its full name (`from app import http` is app.http)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _crosses(name: str, forbidden: set[str]) -> bool:
    return any(name == f or name.startswith(f + ".") for f in forbidden)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_across_the_layers(package: str) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(
            n for n in _imports(path) if _crosses(n, FORBIDDEN[package])
        )
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {file: names for file, names in wrong.items() if names} == {}
