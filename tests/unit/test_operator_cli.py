"""The CLI as an operator meets it: help on every option, the data directory, demo hints."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from tracker import demo, settings
from tracker.cli import cli
from tracker.console import commands


def _commands(command: Any, path: str = "tracker") -> Iterator[tuple[str, Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, f"{path} {name}")


def test_every_option_of_every_command_has_help() -> None:
    """`--priority`, `--chunk-size`, list's `--to`... each says what it does."""
    missing = [
        f"{path} {param.opts[0]}"
        for path, command in _commands(typer.main.get_command(cli))
        for param in command.params
        if param.param_type_name == "option" and not getattr(param, "help", None)
    ]
    assert missing == []


def test_the_data_dir_is_beside_the_checkouts_venv_whatever_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from .venv, the default is <checkout>/var as an absolute path, from any folder."""
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "checkout" / ".venv"))
    monkeypatch.setattr(sys, "base_prefix", "/usr")
    monkeypatch.chdir(tmp_path)
    assert settings.default_data_dir() == tmp_path / "checkout" / "var"
    monkeypatch.delenv("TRACKER_DATA_DIR", raising=False)
    loaded = settings.Settings.load()
    assert loaded.data_dir.is_absolute()
    assert loaded.async_database_url.endswith(f"{tmp_path}/checkout/var/tracker.db")


def test_other_installs_use_the_per_user_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside a checkout's .venv: $XDG_DATA_HOME/kimisms-tracker (~/.local/share by default)."""
    monkeypatch.setattr(sys, "prefix", "/usr")
    monkeypatch.setattr(sys, "base_prefix", "/usr")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    assert settings.default_data_dir() == tmp_path / "share" / "kimisms-tracker"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert settings.default_data_dir() == tmp_path / ".local" / "share" / "kimisms-tracker"


def test_demo_hints_name_the_command_as_run_and_set_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a checkout the hints say `.venv/bin/tracker`, and KEY comes from `keys create`."""
    program = tmp_path / ".venv" / "bin" / "tracker"
    program.parent.mkdir(parents=True)
    program.touch()
    monkeypatch.setattr(sys, "argv", [str(program), "demo"])
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.chdir(tmp_path)
    assert demo.command() == ".venv/bin/tracker"
    text = demo.hints(demo.command())
    assert "KEY=$(.venv/bin/tracker keys create --name me --scopes send,read)" in text
    assert "TRACKER_API_KEY=$KEY .venv/bin/tracker stats" in text
    assert "serve --sandbox" in text
    monkeypatch.setattr(sys, "argv", ["/x/tracker/__main__.py"])
    assert demo.command().endswith(" -m tracker")


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("24H", 86_400), ("7d", 604_800)]
)
def test_valid_for_takes_seconds_or_a_unit(text: str, seconds: int) -> None:
    """`send --valid-for` reads like the stats window; the API gets seconds."""
    assert commands.duration_seconds(text, "--valid-for") == seconds


@pytest.mark.parametrize("text", ["", "0", "-5", "1w", "forever", "1.5h"])
def test_a_bad_valid_for_names_the_option(text: str) -> None:
    """Anything else is one line naming --valid-for."""
    with pytest.raises(commands.ApiError, match="--valid-for must be like"):
        commands.duration_seconds(text, "--valid-for")
