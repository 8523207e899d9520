"""The real catalogue behind the call engine: a German-language dial-in plays espeak-ng's
German prompts to the phone (rig: tests/calls/conftest.py, loopback stand-ins)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from dialbridge.calls.standins import wait_for
from dialbridge.media.playback import load_prompt
from dialbridge.prompts import PromptCatalogue
from tests.calls.conftest import make_rig  # noqa: F401 - the rig fixture

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="espeak-ng and sox (Debian packages) are not installed",
)


class Recording:
    """The real catalogue, remembering what was asked."""

    def __init__(self, catalogue: PromptCatalogue) -> None:
        self.catalogue = catalogue
        self.asked: list[tuple[str, str]] = []

    def path(self, key: str, language: str, codec: str) -> Path:
        self.asked.append((key, language))
        return self.catalogue.path(key, language, codec)


async def test_german_dial_in_plays_the_rendered_german_pin_prompt(make_rig, tmp_path) -> None:  # noqa: ANN001, F811
    rig = await make_rig(ivr={"language": "de", "pin_timeout": 8})
    catalogue = PromptCatalogue(tmp_path / "prompts", tmp_path / "recordings", ("de", "en"))
    expected = load_prompt(catalogue.path("enter_pin", "de")).duration
    rig.engine.prompts = Recording(catalogue)
    phone = await rig.phone.dial("+493012345670", caller="+4930444444444")
    await phone.answered()
    assert await wait_for(lambda: ("enter_pin", "de") in rig.engine.prompts.asked, 5)
    await asyncio.sleep(expected + 0.5)
    # The phone hears speech for about as long as the German prompt lasts (50 frames/s).
    loud = phone.rtp.heard_sound()
    assert expected * 50 * 0.5 < loud < expected * 50 * 1.1, (loud, expected)
    await phone.hangup()
