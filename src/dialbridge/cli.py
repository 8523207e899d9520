"""The ``dialbridge`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
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
    from dialbridge.ops.logs import configure_logging

    config = _config(args)
    configure_logging(config.log)
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


def cmd_check(args: argparse.Namespace) -> int:
    from dialbridge.ops.check import Finding, exit_status, run_checks

    try:
        config = _config(args)
    except ConfigError as err:
        print(Finding("error", "", str(err)).render())
        print("dialbridge check: 1 error (the configuration does not load)")
        return 1
    findings = _run(run_checks(config, ports=not args.skip_ports, prompts=not args.skip_prompts))
    for finding in findings:
        if finding.level != "ok" or args.verbose:
            print(finding.render())
    errors = sum(f.level == "error" for f in findings)
    warnings = sum(f.level == "warning" for f in findings)
    passed = sum(f.level == "ok" for f in findings)
    print(f"dialbridge check: {errors} errors, {warnings} warnings, {passed} checks passed")
    return exit_status(findings)


def cmd_jigasi_config(args: argparse.Namespace) -> int:
    from dialbridge.ops.jigasi_config import (
        JigasiConfigError,
        jigasi_settings,
        render_env_file,
        render_properties,
    )

    try:
        settings = jigasi_settings(
            _config(args),
            proxy_host=args.proxy_host,
            transport=args.transport,
            meet_domain=args.meet_domain,
            start_muted=args.start_muted,
        )
    except JigasiConfigError as err:
        print(f"dialbridge: {err}", file=sys.stderr)
        return 1
    if args.part in ("all", "properties"):
        print(render_properties(settings), end="")
    if args.part == "all":
        print()
    if args.part in ("all", "env"):
        print(render_env_file(settings), end="")
    return 0


def cmd_meet_config(args: argparse.Namespace) -> int:
    from dialbridge.ops.meet_config import meet_settings, render_config_js, render_nginx

    settings = meet_settings(
        _config(args),
        meet_domain=args.meet_domain,
        base_url=args.base_url,
        password_digits=args.password_digits,
    )
    if args.part in ("all", "config-js"):
        print(render_config_js(settings), end="")
    if args.part == "all":
        print()
    if args.part in ("all", "nginx"):
        print(render_nginx(settings), end="")
    return 0


def cmd_cdr(args: argparse.Namespace) -> int:
    from dialbridge.ops.cdr import cdr_dict, find_cdrs, parse_since, render_table
    from dialbridge.store.cdr import CallRecords

    try:
        since = parse_since(args.since)
    except ValueError as err:
        print(f"dialbridge: --since {err}", file=sys.stderr)
        return 2

    async def work(services) -> int:  # noqa: ANN001
        rows = await find_cdrs(CallRecords(services.db), direction=args.direction, since=since,
                               room=args.room, cause=args.cause, outcome=args.outcome,
                               limit=args.limit)  # fmt: skip
        if args.json:
            print(json.dumps([cdr_dict(r) for r in rows], indent=2))
        else:
            print(render_table(rows))
        return 0

    return _with_services(args, work)


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
        "serve", help="run SIP, media and the Meet web services"
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

    p = sub.add_parser(
        "check", help="validate the config and this host (ports, TLS, prompts, store)"
    )
    p.add_argument("--skip-ports", action="store_true", help="do not test-bind the listeners")
    p.add_argument("--skip-prompts", action="store_true", help="do not test prompt rendering")
    p.add_argument("--verbose", "-v", action="store_true", help="also list the checks that passed")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "jigasi-config", help="print Jigasi's sip-communicator.properties and config"
    )
    p.add_argument("part", nargs="?", choices=["all", "properties", "env"], default="all")
    p.add_argument("--proxy-host", help="address Jigasi connects to (default: sip.advertised_host)")
    p.add_argument("--transport", choices=["udp", "tcp", "tls"], help="default: tcp, udp, tls")
    p.add_argument("--meet-domain", help="the Meet domain (default: from jigasi/mapper config)")
    p.add_argument("--start-muted", action="store_true",
                   help="ENABLE_SIP_STARTMUTED: moderators can mute phone users")  # fmt: skip
    p.set_defaults(func=cmd_jigasi_config)

    p = sub.add_parser("meet-config", help="print Meet's config.js lines and an nginx location")
    p.add_argument("part", nargs="?", choices=["all", "config-js", "nginx"], default="all")
    p.add_argument("--meet-domain", help="the Meet domain (default: from jigasi/mapper config)")
    p.add_argument("--base-url", help="public URL of the services (default: https://<meet domain>)")
    p.add_argument("--password-digits", type=int, default=10)
    p.set_defaults(func=cmd_meet_config)

    p = sub.add_parser("cdr", help="list call detail records, newest first")
    p.add_argument("--direction", choices=["in", "out"])
    p.add_argument("--since", help="90m, 2h, 7d, a Unix time or an ISO date")
    p.add_argument("--room", help="part of the room JID")
    p.add_argument("--cause", help="part of the hang-up cause")
    p.add_argument("--outcome", choices=["bridged", "failed"])
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_cdr)

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
