"""The dialbridge command as an admin uses it (real processes, real files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DIALBRIDGE_")}
    full_env.update({"DIALBRIDGE_STORE__DATA_DIR": str(tmp_path / "data"), **env})
    return subprocess.run(
        [sys.executable, "-m", "dialbridge.cli", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_init_writes_a_config_that_loads(tmp_path: Path) -> None:
    target = tmp_path / "dialbridge.toml"
    result = run(["init", str(target)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "[mapper]" in target.read_text()
    again = run(["init", str(target)], tmp_path)
    assert again.returncode == 1 and "exists" in again.stderr
    listed = run(["--config", str(target), "numbers"], tmp_path)
    assert listed.returncode == 0 and "hide dial-in" in listed.stdout


@pytest.mark.parametrize(
    ("toml", "env", "key"),
    [
        ("[mapper]\npin_length = 4\n", {}, "mapper.pin_length"),
        ("[http]\nport = 'x'\n", {}, "http.port"),
        ("[mapper]\npin_lenght = 8\n", {}, "mapper.pin_lenght: unknown key"),
        ("", {"DIALBRIDGE_DIALOUT__ALLOWED_COUNTRIES": '["XX"]'}, "dialout.allowed_countries"),
        ("[[numbers.entries]]\nnumber = 'nope'\n", {}, "numbers.entries.0"),
        ("[http\n", {}, "not valid TOML"),
    ],
)
def test_bad_config_stops_with_the_key_named(
    tmp_path: Path, toml: str, env: dict, key: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    result = run(["--config", str(config), "numbers"], tmp_path, **env)
    assert result.returncode == 2
    assert key in result.stderr


def test_config_from_environment_variable_path(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[numbers.entries]]\nnumber = "+49 30 1234567"\ndefault = true\n')
    result = run(["numbers"], tmp_path, DIALBRIDGE_CONFIG=str(config))
    assert result.returncode == 0
    assert "+49 30 1234567" in result.stdout and "default" in result.stdout


def test_pins_set_show_list_delete(tmp_path: Path) -> None:
    room = "Board@conference.meet.example.com"
    result = run(["pins", "set", room, "4242424242", "--json"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0] == {
        "pin": "4242424242",
        "conference": "board@conference.meet.example.com",
        "static": True,
        "last_used": json.loads(result.stdout)[0]["last_used"],
        "expires": "never",
    }
    shown = run(["pins", "show", "4242424242"], tmp_path)
    assert shown.returncode == 0 and "board@conference.meet.example.com" in shown.stdout
    by_room = run(["pins", "show", room], tmp_path)
    assert "4242424242" in by_room.stdout
    listed = run(["pins", "list", "--json"], tmp_path)
    assert [m["pin"] for m in json.loads(listed.stdout)] == ["4242424242"]
    taken = run(["pins", "set", "other@conference.meet.example.com", "4242424242"], tmp_path)
    assert taken.returncode == 1 and "belongs to" in taken.stderr
    assert run(["pins", "delete", "4242424242"], tmp_path).returncode == 0
    assert run(["pins", "show", "4242424242"], tmp_path).returncode == 1


def test_help_lists_every_command(tmp_path: Path) -> None:
    result = run(["--help"], tmp_path)
    for command in ("serve", "init", "pins", "numbers", "demo"):
        assert command in result.stdout
