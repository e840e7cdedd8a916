"""The CLI: every option explained in --help, clear errors, and `evaluate` agreeing with a card."""

import argparse
from pathlib import Path

import pytest

from training.__main__ import _parser, main

MODELS = Path(__file__).resolve().parents[2] / "models"


def _help(capsys: pytest.CaptureFixture[str], *command: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys)
    for command in ("train", "evaluate", "retrain", "reproduce"):
        assert command in text


def _commands() -> dict[str, argparse.ArgumentParser]:
    (subparsers,) = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(subparsers.choices)


def test_every_command_has_help() -> None:
    (subparsers,) = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    described = {choice.dest: (choice.help or "").strip() for choice in subparsers._choices_actions}
    assert set(described) == {"train", "evaluate", "retrain", "reproduce"}
    assert all(described.values()), described


@pytest.mark.parametrize("command", ["train", "evaluate", "retrain", "reproduce"])
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
