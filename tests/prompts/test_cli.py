"""``dialbridge prompts build|list|say`` through cmd_prompts (the lead wires the argparse)."""

from __future__ import annotations

import argparse
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from dialbridge.prompts import KEYS
from dialbridge.prompts.cli import cmd_prompts

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="espeak-ng and sox (Debian packages) are not installed",
)


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(__import__("os").environ):
        if name.startswith("DIALBRIDGE_"):
            monkeypatch.delenv(name)
    path = tmp_path / "dialbridge.toml"
    path.write_text(f'[store]\ndata_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    return path


def args(config: Path, action: str, **kw) -> argparse.Namespace:  # noqa: ANN003
    return argparse.Namespace(config=str(config), action=action, key=kw.get("key"),
                              language=kw.get("language"), output=kw.get("output"))  # fmt: skip


def test_build_renders_every_prompt_into_the_data_dir(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cmd_prompts(args(config_file, "build")) == 0
    out = capsys.readouterr().out
    assert f"{len(KEYS) * 2} prompts (en, de)" in out
    rendered = list((tmp_path / "data" / "prompts" / "wav8k").rglob("*.wav"))
    assert len(rendered) == len(KEYS) * 2


def test_build_one_language(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd_prompts(args(config_file, "build", language=["de"])) == 0
    assert f"{len(KEYS)} prompts (de)" in capsys.readouterr().out


def test_unknown_language_is_reported(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cmd_prompts(args(config_file, "build", language=["fr"])) == 1
    assert "fr not configured" in capsys.readouterr().err


def test_list_shows_texts(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd_prompts(args(config_file, "list")) == 0
    out = capsys.readouterr().out
    assert "You are muted. Press star 6 to unmute." in out
    assert "Drücken Sie Stern 6" in out


def test_say_writes_a_wav_per_language(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "goodbye.wav"
    assert cmd_prompts(args(config_file, "say", key="goodbye", output=str(out))) == 0
    for lang in ("en", "de"):
        with wave.open(str(tmp_path / f"goodbye.{lang}.wav")) as w:
            assert w.getframerate() == 8000
            assert np.frombuffer(w.readframes(w.getnframes()), "<i2").any()


def test_say_unknown_key_is_an_error(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd_prompts(args(config_file, "say", key="nope")) == 1
    assert "unknown prompt key 'nope'" in capsys.readouterr().err
