"""The scenario API: what a call flow is, and how one is found by name.

A scenario is ``async def scenario(call: Call) -> None``. It uses the methods of
:class:`~dialbridge.calls.call.Call` — ``answer``, ``ring``, ``reject``, ``say``, ``collect``,
``lookup_pin``, ``dial_jigasi``, ``dial_trunk``, ``bridge``, ``hangup`` — and the in-call hook
:func:`run_in_call`. When the call ends under it, it is cancelled. Built-ins: ``dial_in``,
``dial_out``, ``jigasi_health``; a custom one is named ``package.module:function`` in
``[[routes]]`` and gets exactly the same API (an allow-listed caller that skips the PIN, a PIN
before dialling out, a hand-off to a PBX, ...).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from dialbridge.calls.call import Call, Leg

Scenario = Callable[["Call"], Awaitable[None]]


class PromptCatalogue(Protocol):
    """What the call layer needs of prompts (:mod:`dialbridge.prompts` provides it): a WAV
    file for a key in a language, at any rate (the media engine resamples)."""

    def path(self, key: str, language: str, codec: str) -> Path: ...


BUILT_IN = {
    "dial_in": "dialbridge.calls.scenarios.dial_in:dial_in",
    "dial_out": "dialbridge.calls.scenarios.dial_out:dial_out",
    "jigasi_health": "dialbridge.calls.scenarios.jigasi_health:jigasi_health",
}


class ScenarioError(ValueError):
    """A configured scenario cannot be loaded (a local error: the config is wrong)."""


def load_scenario(name: str) -> Scenario:
    module_name, _, function = BUILT_IN.get(name, name).partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ScenarioError(f"scenario {name!r}: cannot import {module_name}: {exc}") from None
    scenario = getattr(module, function, None)
    if scenario is None or not inspect.iscoroutinefunction(scenario):
        raise ScenarioError(f"scenario {name!r}: {function} is not an async function")
    return scenario


async def run_in_call(call: Call, jigasi: Leg, pstn: Leg) -> None:
    """After the bridge: hand over to the in-call controls (mute keys, lobby, heartbeat —
    :mod:`dialbridge.calls.in_call`) when they are installed, else simply wait for the end.

    The controls get the call (events, ``say``, hang-up), the Jigasi leg (INFO JSON) and the
    phone leg (digits, prompts); they return when the call is over."""
    try:
        from dialbridge.calls import in_call
    except ImportError:
        in_call = None
    controls = getattr(in_call, "run_in_call", None)
    if controls is not None:
        await controls(call, jigasi, pstn)
    await call.wait_ended()
