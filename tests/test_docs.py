"""The documentation a newcomer reads: every link of the README and docs/ leads somewhere in the
repository (a file, and a heading when it names one), and docs/settings.md lists every setting."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from app.settings import Settings

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)


def links(page: Path) -> list[str]:
    """The targets of a page's Markdown links and images, outside code blocks."""
    return LINK.findall(FENCE.sub("", page.read_text()))


def anchors(page: Path) -> set[str]:
    """The anchors GitHub makes of a page's headings: lower case, punctuation dropped,
    spaces to hyphens, a repeated heading numbered."""
    made: set[str] = set()
    for heading in re.findall(r"^#+ +(.+?) *$", FENCE.sub("", page.read_text()), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        unique, n = slug, 0
        while unique in made:
            n += 1
            unique = f"{slug}-{n}"
        made.add(unique)
    return made


def broken(page: Path, root: Path = REPO) -> list[str]:
    """The page's relative links whose file, or heading, is not under root."""
    found = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path if path else page).resolve()
        if not resolved.exists() or root.resolve() not in resolved.parents:
            found.append(target)  # no such file, or outside the repository
        elif resolved.suffix == ".md" and anchor and anchor not in anchors(resolved):
            found.append(target)  # no such heading
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_link_leads_to_a_file_in_the_repository(page: Path) -> None:
    assert broken(page) == []


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("# A heading\n")
    page.write_text(
        "[ok](there.md) ![ok](there.md#a-heading) [web](https://example.org/x) [up](#top)\n"
        "# Top\n[gone](missing.md) [no heading](there.md#elsewhere) [out](../../etc/passwd)\n"
        "```\n[code](not-a-link.md)\n```\n"
    )
    assert broken(page, tmp_path) == ["missing.md", "there.md#elsewhere", "../../etc/passwd"]


def test_docs_settings_lists_every_setting() -> None:
    listed = (REPO / "docs" / "settings.md").read_text()
    missing = [
        f"COUNTER_{name.upper()}"
        for name in Settings.model_fields
        if f"`COUNTER_{name.upper()}`" not in listed
    ]
    assert missing == []


def test_the_readme_is_short() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 200


def test_ci_runs_the_readme_s_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    commands = re.search(r"## Two commands\n+```sh\n(.*?)```", readme, re.DOTALL)
    assert commands is not None
    assert [line.split("#")[0].strip() for line in commands[1].splitlines()] == [
        "make serve",
        "make test",
    ]
    steps = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert steps[-1] == "make test"


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on PATH")
@pytest.mark.parametrize("variable", ["COUNTER_PORT", "PORT"])
def test_make_serve_listens_where_the_readme_says(variable: str) -> None:
    """`COUNTER_PORT=9000 make serve` (or PORT=9000) serves on 9000, not the default."""
    # As from a user's shell, also when the tests run under make (`make test`, `make check`),
    # whose variables would make this make a sub-make that prints "Leaving directory".
    outer = ("COUNTER_PORT", "PORT", "MAKELEVEL", "MAKEFLAGS", "MFLAGS")
    env = {k: v for k, v in os.environ.items() if k not in outer}
    done = subprocess.run(
        ["make", "-n", "serve"],
        env={**env, variable: "9000"},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.splitlines()[-1] == "COUNTER_PORT=9000 .venv/bin/python -m app"
