"""Which of the repository's modules need torch, read from their imports (and their imports'
imports), so that `make check` runs and type-checks the rest in a virtualenv without torch.

A module needs torch when it imports torch, or imports a module of this repository that does
(a package's __init__ counts, as Python runs it). Any import counts, even one inside a function:
such a module is left to `make test`, never half-run. `python -m tests.torch_stack` prints the
files mypy checks without torch: the ones of [tool.mypy] files that need none.
"""

import ast
import sys
import tomllib
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Where a top-level name may be found: the repository, then mypy's extra path (the Ray Serve
# deployment is imported by its file's name, counter_serve).
_SEARCH = (ROOT, ROOT / "deploy" / "ray")


@cache
def _imported(path: Path) -> frozenset[str]:
    """Every module an import statement in the file runs, with its parent packages."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from a import b` runs a, and a.b too when b is a submodule.
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return frozenset(
        ".".join(name.split(".")[:end]) for name in names for end in range(1, name.count(".") + 2)
    )


@cache
def _source(module: str) -> Path | None:
    """The repository file that defines a module, or None for one from elsewhere."""
    parts = module.split(".")
    for base in _SEARCH:
        for candidate in (
            base.joinpath(*parts).with_suffix(".py"),
            base.joinpath(*parts, "__init__.py"),
        ):
            if candidate.is_file():
                return candidate
    return None


@cache
def needs_torch(path: Path) -> bool:
    """Whether importing this file imports torch (through any of the repository's modules)."""
    seen: set[Path] = set()
    pending = [path.resolve()]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        for module in _imported(current):
            if module.split(".")[0] == "torch":
                return True
            source = _source(module)
            if source is not None:
                pending.append(source)
    return False


def typed_files() -> list[Path]:
    """The files of [tool.mypy] files, a stub in place of its module when there is one."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    found: list[Path] = []
    for entry in config["files"]:
        for path in sorted((ROOT / entry).rglob("*.py*")):
            if path.suffix == ".pyi" or (
                path.suffix == ".py" and not path.with_suffix(".pyi").exists()
            ):
                found.append(path)
    return found


def main() -> None:
    for path in typed_files():
        if not needs_torch(path):
            sys.stdout.write(f"{path.relative_to(ROOT)}\n")


if __name__ == "__main__":
    main()
