"""``make run`` prints commands that work as typed from the folder it runs in (the printed line itself:
tests/test_e2e_config.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controller.service import command_as_typed


def test_a_script_under_the_working_folder_is_shown_relative_to_it(tmp_path: Path) -> None:
    script = tmp_path / ".venv" / "bin" / "webhook-service"
    assert command_as_typed(str(script), tmp_path) == ".venv/bin/webhook-service"
    assert command_as_typed(".venv/bin/webhook-service", tmp_path) == ".venv/bin/webhook-service"


def test_a_script_in_the_working_folder_itself_is_shown_with_dot_slash(tmp_path: Path) -> None:
    assert command_as_typed(str(tmp_path / "webhook-service"), tmp_path) == "./webhook-service"


def test_a_script_on_path_is_shown_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "webhook-service"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert command_as_typed(str(script), tmp_path / "elsewhere") == "webhook-service"


def test_a_script_elsewhere_and_not_on_path_is_shown_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", os.devnull)
    script = tmp_path / "venv" / "bin" / "webhook-service"
    assert command_as_typed(str(script), tmp_path / "repo") == str(script)
