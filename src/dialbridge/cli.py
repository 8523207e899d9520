"""The ``dialbridge`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from dialbridge import __version__
from dialbridge.config import CONFIG_ENV, Config, ConfigError, load_config

EXAMPLE_CONFIG = Path(__file__).with_name("example.toml")


def _run(coro: Awaitable[int | None]) -> int | None:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep working without it
        return asyncio.run(coro)


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config)


# -- commands --------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    target = Path(args.path)
    if target.exists() and not args.force:
        print(f"{target} exists; use --force to overwrite", file=sys.stderr)
        return 1
    target.write_text(EXAMPLE_CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    print(f"wrote {target}; edit it, then: dialbridge --config {target} serve")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from dialbridge.app import serve

    config = _config(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        _run(serve(config))
    return 0


def _with_services(args: argparse.Namespace, work: Callable[..., Awaitable[int]]) -> int:
    from dialbridge.app import open_services

    config = _config(args)

    async def main() -> int:
        async with open_services(config) as services:
            return await work(services)

    return _run(main()) or 0


def _mapping_dict(m) -> dict[str, object]:  # noqa: ANN001
    return {
        "pin": m.pin,
        "conference": m.conference,
        "static": m.static,
        "last_used": _iso(m.last_used_at),
        "expires": _iso(m.expires_at) if m.expires_at is not None else "never",
    }


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _print_mappings(rows: list, as_json: bool) -> None:
    if as_json:
        print(json.dumps([_mapping_dict(m) for m in rows], indent=2))
        return
    for m in rows:
        d = _mapping_dict(m)
        print(
            f"{d['pin']:>13}  {'static' if m.static else 'expires ' + str(d['expires']):<28}  {d['conference']}"
        )


def cmd_pins(args: argparse.Namespace) -> int:
    from dialbridge.rooms import InvalidConference, parse_conference
    from dialbridge.store.mappings import PinUnavailable

    def room_jid(value: str) -> str:
        try:
            return parse_conference(value).jid
        except InvalidConference as err:
            raise SystemExit(f"dialbridge: {value!r}: {err}") from None

    async def work(services) -> int:  # noqa: ANN001
        repo = services.mappings
        if args.pins_command == "list":
            _print_mappings(await repo.list(search=args.search, limit=args.limit), args.json)
        elif args.pins_command == "show":
            key = args.key if args.key.isdigit() else room_jid(args.key)
            found = await repo.show(key)
            if found is None:
                print(f"no live mapping for {args.key}", file=sys.stderr)
                return 1
            _print_mappings([found], args.json)
        elif args.pins_command == "set":
            try:
                m = await repo.set_static(room_jid(args.conference), args.pin, replace=args.force)
            except (PinUnavailable, ValueError) as err:
                print(f"dialbridge: {err}", file=sys.stderr)
                return 1
            _print_mappings([m], args.json)
        elif args.pins_command == "delete":
            if not await repo.delete(args.pin):
                print(f"no live mapping with PIN {args.pin}", file=sys.stderr)
                return 1
            print(f"deleted {args.pin} (the PIN stays in quarantine)")
        return 0

    return _with_services(args, work)


def cmd_numbers(args: argparse.Namespace) -> int:
    from dialbridge.phone_numbers import PhoneNumberList

    numbers = PhoneNumberList(_config(args).numbers)
    if not numbers.numbers:
        print("no dial-in numbers configured: Meet will hide dial-in")
        return 0
    for n in numbers.numbers:
        flags = ", ".join(f for f, on in (("default", n.default), ("toll-free", n.toll_free)) if on)
        tenants = f"  tenants: {', '.join(n.tenants)}" if n.tenants else ""
        print(f"{n.country:<3} {n.formatted:<24} {n.e164:<16} {flags}{tenants}")
    return 0


def cmd_prompts(args: argparse.Namespace) -> int:
    from dialbridge.prompts.cli import cmd_prompts as run_prompts

    return run_prompts(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from dialbridge.demo import run_demo

    return _run(run_demo()) or 0


def cmd_version(_args: argparse.Namespace) -> int:
    print(__version__)
    return 0


# -- parser ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dialbridge",
        description="Phone dial-in and dial-out for self-hosted Jitsi Meet.",
    )
    parser.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        help=f"dialbridge.toml to read (default: ${CONFIG_ENV}, else built-in defaults)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "serve", help="run the services (HTTP now; SIP and media join in later releases)"
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("init", help="write a commented example dialbridge.toml")
    p.add_argument("path", nargs="?", default="dialbridge.toml")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("pins", help="list, show, set or delete conference PINs")
    pins = p.add_subparsers(dest="pins_command", required=True, metavar="ACTION")
    q = pins.add_parser("list", help="live mappings, most recently used first")
    q.add_argument("--search", help="part of a room JID, or the start of a PIN")
    q.add_argument("--limit", type=int, default=100)
    q = pins.add_parser("show", help="one mapping by PIN or room@muc (not counted as a use)")
    q.add_argument("key")
    q = pins.add_parser("set", help="bind a room to a static PIN that never expires")
    q.add_argument("conference", help="room@conference.meet.example.com")
    q.add_argument("pin", help="4-13 digits, no leading zero")
    q.add_argument(
        "--force", action="store_true", help="take the PIN from another room or from quarantine"
    )
    q = pins.add_parser("delete", help="forget a mapping (its PIN goes into quarantine)")
    q.add_argument("pin")
    for action in pins.choices.values():
        action.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_pins)

    p = sub.add_parser("numbers", help="show the configured dial-in numbers as Meet will see them")
    p.set_defaults(func=cmd_numbers)

    p = sub.add_parser("prompts", help="render the prompt cache, list prompts, hear one")
    p.add_argument("action", choices=["build", "list", "say"])
    p.add_argument("key", nargs="?", help="prompt key (for 'say')")
    p.add_argument("--language", action="append", help="only this language (repeatable)")
    p.add_argument("--output", help="'say': copy the prompt's WAV here")
    p.set_defaults(func=cmd_prompts)

    p = sub.add_parser("demo", help="run dialbridge on embedded defaults and show what it does")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=cmd_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"dialbridge: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
