"""Spoken prompts: the catalogue of keys, their texts in English and German, rendering with
espeak-ng + sox into a cache, and admin recordings that take precedence (docs/in-call.md)."""

from __future__ import annotations

from typing import Any

from dialbridge.prompts.catalogue import (
    PromptCatalogue,
    PromptError,
    PromptRenderError,
    UnknownPromptError,
    spoken_keys,
)
from dialbridge.prompts.texts import KEYS, TEXTS

__all__ = [
    "KEYS",
    "TEXTS",
    "PromptCatalogue",
    "PromptError",
    "PromptRenderError",
    "UnknownPromptError",
    "catalogue_from_config",
    "spoken_keys",
]


def catalogue_from_config(config: Any) -> PromptCatalogue:
    """The catalogue a running dialbridge uses, from its configuration.

    Reads, when present: ``ivr.prompt_dir`` (cache; default ``<store.data_dir>/prompts``),
    ``ivr.prompt_override_dir`` (admin recordings), ``ivr.languages`` (default: English and
    German, with ``ivr.language`` and every number's language first in line), and the in-call
    key map ``ivr.keys`` ({"mute_toggle": "*6", "raise_hand": "*9", "help": "*1"})."""
    ivr = getattr(config, "ivr", None)
    cache = getattr(ivr, "prompt_dir", "") or config.store.data_dir / "prompts"
    override = getattr(ivr, "prompt_override_dir", "") or None
    languages: list[str] = list(getattr(ivr, "languages", None) or ())
    if not languages:
        wanted = [getattr(ivr, "language", None) or "en"]
        numbers = getattr(config, "numbers", None)
        for entry in getattr(numbers, "entries", None) or getattr(numbers, "numbers", None) or ():
            wanted.append(getattr(entry, "language", None))
        wanted += ["en", "de"]
        languages = [lang for lang in dict.fromkeys(wanted) if lang in TEXTS]
    keymap = getattr(ivr, "keys", None) or {}
    placeholders = {}
    for control, placeholder in (
        ("mute_toggle", "mute_keys"),
        ("raise_hand", "hand_keys"),
        ("help", "help_keys"),
    ):
        if control in keymap:
            placeholders[placeholder] = keymap[control] or ""  # "" = unbound
    return PromptCatalogue(cache, override, languages, keys=placeholders)
