"""``dialbridge prompts build|list|say``: render the prompt cache ahead of time, show what
each key says and which file plays, or render one key to a chosen file for listening.

Wired into :mod:`dialbridge.cli` by the lead::

    p = sub.add_parser("prompts", help="render the prompt cache, list prompts, hear one")
    p.add_argument("action", choices=["build", "list", "say"])
    p.add_argument("key", nargs="?", help="prompt key (for 'say')")
    p.add_argument("--language", action="append", help="only this language (repeatable)")
    p.add_argument("--output", help="'say': copy the prompt's WAV here")
    p.set_defaults(func=cmd_prompts)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from dialbridge.prompts import KEYS, PromptCatalogue, PromptError, catalogue_from_config

__all__ = ["cmd_prompts"]


def _catalogue(args: argparse.Namespace) -> PromptCatalogue:
    from dialbridge.config import load_config

    catalogue = catalogue_from_config(load_config(getattr(args, "config", None)))
    wanted = getattr(args, "language", None)
    if wanted:
        unknown = [lang for lang in wanted if lang not in catalogue.languages]
        if unknown:
            raise PromptError(
                f"language(s) {', '.join(unknown)} not configured "
                f"(configured: {', '.join(catalogue.languages)})"
            )
        # Keep the configured order (menu digits), limited to the ones asked for.
        catalogue = PromptCatalogue(
            catalogue.cache_dir,
            catalogue.override_dir,
            [lang for lang in catalogue.languages if lang in wanted],
            keys={k: v for k, v in catalogue.keys.items()},
            speed=catalogue.speed,
        )
    return catalogue


def _source(catalogue: PromptCatalogue, key: str, language: str) -> str:
    return "recording" if catalogue.override(key, language) is not None else "rendered"


def _build(catalogue: PromptCatalogue) -> int:
    from dialbridge.media.playback import load_prompt

    started = time.perf_counter()
    paths = catalogue.ensure_built()
    elapsed = time.perf_counter() - started
    bad = 0
    recordings = 0
    for path, (language, key) in zip(
        paths, [(lang, k) for lang in catalogue.languages for k in sorted(KEYS)], strict=True
    ):
        if _source(catalogue, key, language) == "recording":
            recordings += 1
        try:
            load_prompt(path)  # exactly what the media engine will do at play time
        except (OSError, ValueError) as exc:
            bad += 1
            print(f"error: {language}/{key}: {path} cannot be played: {exc}", file=sys.stderr)
    print(
        f"{len(paths)} prompts ({', '.join(catalogue.languages)}): "
        f"{len(paths) - recordings} rendered, {recordings} recordings, in {elapsed:.1f} s"
    )
    print(f"cache: {catalogue.cache_dir}")
    if catalogue.override_dir is not None:
        print(f"recordings: {catalogue.override_dir}/<language>/<key>.wav")
    return 1 if bad else 0


def _list(catalogue: PromptCatalogue) -> int:
    for language in catalogue.languages:
        for key in sorted(KEYS):
            print(f"{language}  {key:<26} {_source(catalogue, key, language):<9}  "
                  f"{catalogue.text(key, language)}")  # fmt: skip
    return 0


def _say(catalogue: PromptCatalogue, key: str | None, output: str | None) -> int:
    if not key:
        print("error: 'prompts say' needs a KEY", file=sys.stderr)
        return 2
    for language in catalogue.languages:
        path = catalogue.path(key, language)
        if output:
            target = Path(output)
            if len(catalogue.languages) > 1:
                target = target.with_name(f"{target.stem}.{language}{target.suffix or '.wav'}")
            shutil.copyfile(path, target)
            path = target
        print(f"{language}  {path}  {catalogue.text(key, language)}")
    return 0


def cmd_prompts(args: argparse.Namespace) -> int:
    try:
        catalogue = _catalogue(args)
        if args.action == "build":
            return _build(catalogue)
        if args.action == "list":
            return _list(catalogue)
        if args.action == "say":
            return _say(catalogue, getattr(args, "key", None), getattr(args, "output", None))
    except PromptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"error: unknown action {args.action!r}", file=sys.stderr)
    return 2
