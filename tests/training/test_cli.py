"""The CLI: every option explained in --help, clear errors, and `evaluate` agreeing with a card."""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from training.__main__ import _parser, main

MODELS = Path(__file__).resolve().parents[2] / "models"
COMMANDS = (
    "train",
    "evaluate",
    "retrain",
    "reproduce",
    "decide",
    "decide-seeds",
    "explain",
    "explain-seeds",
)


def _help(capsys: pytest.CaptureFixture[str], *command: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys)
    for command in COMMANDS:
        assert command in text


def _commands() -> dict[str, argparse.ArgumentParser]:
    (subparsers,) = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(subparsers.choices)


def test_python_m_training_help_shows_every_command_with_its_options() -> None:
    """`python -m training --help`, as a newcomer types it: each command and all its options."""
    done = subprocess.run(
        [sys.executable, "-m", "training", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=MODELS.parent,
    )
    # Each command's usage starts a line; its wrapped options continue on deeper-indented lines.
    usages: dict[str, str] = {}
    for line in done.stdout.splitlines():
        if line.startswith("  python -m training "):
            command = line.split()[3]
            usages[command] = line
        elif line.startswith("      ") and usages:
            usages[command] += line
    assert set(usages) == set(COMMANDS), done.stdout
    for name, parser in _commands().items():
        for action in parser._actions:
            shown = action.option_strings[0] if action.option_strings else str(action.dest)
            assert shown in usages[name], f"{name}: {shown} missing from --help"


def test_every_command_has_help() -> None:
    (subparsers,) = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    described = {choice.dest: (choice.help or "").strip() for choice in subparsers._choices_actions}
    assert set(described) == set(COMMANDS)
    assert all(described.values()), described


@pytest.mark.parametrize("command", COMMANDS)
def test_help_explains_every_option(capsys: pytest.CaptureFixture[str], command: str) -> None:
    """Every argument of every command has its own non-empty help, shown by --help."""
    text = _help(capsys, command)
    actions = [a for a in _commands()[command]._actions if a.help != argparse.SUPPRESS]
    assert len(actions) > 1  # --help and at least one real argument
    for action in actions:
        assert (action.help or "").strip(), f"{command}: {action.option_strings or action.dest}"
        assert (action.option_strings or [action.dest])[0] in text
    assert "post" in _help(capsys, "train")  # the recipes are named and described


def test_unknown_recipe_is_refused_with_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--recipe", "fancy", "--out", "x"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "fancy" in error
    assert "'post'" in error
    assert "'robust'" in error


def test_evaluate_names_a_missing_model(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not found"):
        main(["evaluate", str(tmp_path / "nothing")])


@pytest.mark.slow
def test_evaluate_re_measures_the_post_model_and_agrees_with_its_card(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["evaluate", str(MODELS / "counter-post")]) == 0
    out = capsys.readouterr().out
    assert "all figures match the card" in out
    assert "DIFFERS" not in out


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--hidden", "0", "give 1 or more"), ("--epochs", "two", "not a whole number")],
)
def test_bad_numbers_are_refused_with_what_is_accepted(
    capsys: pytest.CaptureFixture[str], option: str, value: str, message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", option, value, "--out", "x"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_explain_json_says_which_model_keeps_the_carry(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["explain", str(MODELS / "counter"), str(MODELS / "counter-post"), "--json"]) == 0
    robust, post = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert robust["carry_attractor"] is True
    assert robust["predicted_longest_exact_run"] == "unbounded"
    assert robust["chain"]["lost_at"] is None
    assert post["carry_attractor"] is False
    # the prediction from the weights is where counter-post's own scan first failed
    scan = json.loads((MODELS / "counter-post.json").read_text())["metrics"]["carry_scan"]
    assert post["predicted_longest_exact_run"] == scan["longest_exact_run"]
    assert post["exit"]["step"] == scan["failing_runs"][0][0]
    assert post["chain"]["margin"][post["exit"]["step"]] < 0
    assert all(p["readout"] != 0 or not p["stable"] for p in post["nine_map"])


def test_explain_write_draws_the_figure_and_records_it_on_the_card(tmp_path: Path) -> None:
    for suffix in (".json", ".onnx"):
        shutil.copy(MODELS / f"counter-post{suffix}", tmp_path / f"counter-post{suffix}")
    assert main(["explain", str(tmp_path / "counter-post"), "--write"]) == 0
    card = json.loads((tmp_path / "counter-post.json").read_text())
    assert card["dynamics"]["carry_attractor"] is False
    assert card["dynamics"]["figure"] == "counter-post-carry.png"
    assert "counter-post-carry.png" in card["plots"]
    assert (tmp_path / "counter-post-carry.png").read_bytes().startswith(b"\x89PNG")
    # the rest of the card is untouched
    before = json.loads((MODELS / "counter-post.json").read_text())
    assert {k: v for k, v in card.items() if k not in ("dynamics", "plots")} == {
        k: v for k, v in before.items() if k not in ("dynamics", "plots")
    }


def test_explain_names_a_missing_model(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"nothing\.onnx not found"):
        main(["explain", str(tmp_path / "nothing")])
