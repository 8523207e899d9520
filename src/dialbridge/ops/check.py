"""``dialbridge check``: is this configuration, on this host, ready to run?

Theory of operation
-------------------
* Each check is a small function that returns :class:`Finding` values; a finding names the
  dotted config key it is about (``sip.tls_cert``), says what is wrong and what to do. Nothing
  here changes the host: ports are bound and released at once, the store is opened read-only
  and never migrated, prompts are rendered into a temporary directory.
* Levels: ``error`` — dialbridge will not start or a part cannot work (a port in use, a
  certificate that does not match its key, a store that cannot be reached); ``warning`` — it
  starts, but something an operator probably wants is missing (no trunk, no Jigasi account,
  a placeholder SIP domain); ``ok`` — a check that passed, so the output reads as a list of
  what was verified.
* The exit status is 0 without errors, 1 with any (a config that does not load is an error that
  names its key, from :class:`dialbridge.config.ConfigError`).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import shutil
import socket
import ssl
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dialbridge.config import Config

# Each call holds two legs (caller and Jigasi, or Jigasi and trunk), each an RTP and an RTCP
# port (no rtcp-mux towards Jigasi, jigasi-protocol.md §9 item 4).
PORTS_PER_CALL = 4
CERT_EXPIRY_WARNING_DAYS = 14
JVB_MEDIA_PORT = 10000  # jitsi-videobridge's UDP port; Jigasi's RTP range starts there too


@dataclass(frozen=True, slots=True)
class Finding:
    level: str  # "error", "warning", "ok"
    key: str  # dotted config key ("" when it is about the host as a whole)
    message: str

    def render(self) -> str:
        mark = {"error": "ERROR", "warning": "warn ", "ok": "ok   "}[self.level]
        where = f"{self.key}: " if self.key else ""
        return f"{mark} {where}{self.message}"


def _ok(key: str, message: str) -> Finding:
    return Finding("ok", key, message)


def _warn(key: str, message: str) -> Finding:
    return Finding("warning", key, message)


def _error(key: str, message: str) -> Finding:
    return Finding("error", key, message)


# -- configuration consistency -------------------------------------------------------------------


def check_config(config: Config) -> list[Finding]:
    out: list[Finding] = []
    users = {u.name for u in config.users}
    if config.jigasi.user in users:
        out.append(_ok("jigasi.user", f"Jigasi registers as {config.jigasi.user!r}"))
    else:
        out.append(
            _warn(
                "jigasi.user",
                f"no [[users]] entry named {config.jigasi.user!r}: Jigasi cannot register, so "
                "dial-in calls cannot reach a meeting (add [[users]] name/password, then run "
                "`dialbridge jigasi-config`)",
            )
        )
    if config.sip.domain.endswith(".invalid"):
        out.append(
            _warn("sip.domain", f"{config.sip.domain!r} is a placeholder; use this host's name")
        )
    wildcard = any(
        host in ("0.0.0.0", "::") for kind in ("udp", "tcp", "tls") for host, _ in config.sip.listeners(kind)
    )  # fmt: skip
    if wildcard and not config.sip.advertised_host:
        out.append(
            _warn(
                "sip.advertised_host",
                "SIP listens on a wildcard address; set advertised_host to the address peers "
                "reach us at (written into Via, Contact and SDP)",
            )
        )
    rtp_host = config.sip.rtp_host
    if wildcard and _is_loopback(rtp_host):
        out.append(
            _warn(
                "sip.rtp_host",
                f"{rtp_host} is loopback while SIP listens on all addresses: trunk and remote "
                "Jigasi media would not reach us",
            )
        )
    span = config.sip.rtp_port_high - config.sip.rtp_port_low + 1
    need = config.limits.max_concurrent_calls * PORTS_PER_CALL
    if span < need:
        out.append(
            _warn(
                "sip.rtp_port_low",
                f"the RTP range has {span} ports, {need} are needed for "
                f"limits.max_concurrent_calls = {config.limits.max_concurrent_calls}",
            )
        )
    else:
        out.append(
            _ok(
                "sip.rtp_port_low",
                f"RTP ports {config.sip.rtp_port_low}-{config.sip.rtp_port_high}",
            )
        )
    if not config.trunks:
        out.append(_warn("trunks", "no trunk: no PSTN calls in or out"))
    elif not any(t.host for t in config.trunks) and any(
        r.scenario == "dial_out" for r in config.routes
    ):
        out.append(_warn("trunks", "no trunk has a host: dial-out has nowhere to go"))
    for i, trunk in enumerate(config.trunks):
        if not trunk.networks:
            out.append(
                _warn(
                    f"trunks.{i}.networks",
                    f"trunk {trunk.name!r} has no networks: its calls "
                    "will not be recognised as dial-in",
                )  # fmt: skip
            )
    if not config.numbers.entries:
        out.append(_warn("numbers.entries", "no dial-in numbers: Meet hides dial-in"))
    if not (config.dialout.allowed_countries or config.dialout.allow_prefixes):
        out.append(
            _warn("dialout.allowed_countries", "dial-out refuses every number (default deny)")
        )
    if not config.mapper.allowed_domains:
        out.append(
            _warn(
                "mapper.allowed_domains",
                "empty: anyone reaching the mapper can create PINs for any domain",
            )  # fmt: skip
        )
    for i, route in enumerate(config.routes):
        if ":" in route.scenario:
            problem = _import_problem(route.scenario)
            if problem:
                out.append(_error(f"routes.{i}.scenario", problem))
    if config.sip.bindings_file:
        parent = _existing_parent(Path(config.sip.bindings_file).parent)
        if not os.access(parent, os.W_OK):
            out.append(_error("sip.bindings_file", f"{parent} is not writable by this user"))
    if config.admin.token:
        out.append(_ok("admin.token", "admin page enabled at /admin"))
    else:
        out.append(_warn("admin.token", "empty: the admin page (/admin) is off"))
    return out


def _import_problem(target: str) -> str | None:
    """Why ``package.module:function`` cannot serve as a scenario, or None."""
    import importlib
    import inspect

    module_name, _, function = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # the admin's module: any import error is worth showing
        return f"cannot import {module_name}: {type(err).__name__}: {err}"
    scenario = getattr(module, function, None)
    if scenario is None:
        return f"{module_name} has no {function}"
    if not inspect.iscoroutinefunction(scenario):
        return f"{target} is not an async function (async def {function}(call))"
    return None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


# -- ports ---------------------------------------------------------------------------------------


def _listeners(config: Config) -> Iterable[tuple[str, str, int, int]]:
    """(key, host, port, socket type) for everything dialbridge will bind."""
    yield "http.port", config.http.host, config.http.port, socket.SOCK_STREAM
    for kind, stype in (("udp", socket.SOCK_DGRAM), ("tcp", socket.SOCK_STREAM),
                        ("tls", socket.SOCK_STREAM)):  # fmt: skip
        for i, (host, port) in enumerate(config.sip.listeners(kind)):
            yield f"sip.{kind}.{i}", host, port, stype


def check_ports(config: Config) -> list[Finding]:
    out = []
    for key, host, port, stype in _listeners(config):
        proto = "UDP" if stype == socket.SOCK_DGRAM else "TCP"
        if port == 0:
            out.append(_ok(key, f"{proto} {host}:0 (any free port)"))
            continue
        problem = _try_bind(host, port, stype)
        if problem is None:
            out.append(_ok(key, f"{proto} {host}:{port} is free"))
        else:
            out.append(_error(key, f"{proto} {host}:{port}: {problem}"))
    rtp = config.sip.rtp_host
    problem = _try_bind(rtp, 0, socket.SOCK_DGRAM)
    if problem is not None:
        out.append(_error("sip.rtp_host", f"cannot bind RTP sockets on {rtp}: {problem}"))
    return out


def _try_bind(host: str, port: int, stype: int) -> str | None:
    try:
        infos = socket.getaddrinfo(host, port, type=stype, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        return f"cannot resolve {host!r}: {err.strerror}"
    family, _, _, _, addr = infos[0]
    with socket.socket(family, stype) as sock:
        if stype == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return "in use by another process (is dialbridge already running? `ss -lntup`)"
            if err.errno == errno.EACCES:
                return (
                    "permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE "
                    "(the systemd unit grants it)"
                )
            if err.errno == errno.EADDRNOTAVAIL:
                return f"{host} is not an address of this host"
            return err.strerror or str(err)
    return None


# -- TLS -----------------------------------------------------------------------------------------


def check_tls(config: Config, *, now: float | None = None) -> list[Finding]:
    sip = config.sip
    if not (sip.tls_cert or sip.tls_key):
        return []
    out = []
    for key, path in (("sip.tls_cert", sip.tls_cert), ("sip.tls_key", sip.tls_key)):
        if path is None:
            out.append(_error(key, "missing (tls_cert and tls_key go together)"))
        elif not Path(path).is_file():
            out.append(_error(key, f"{path} does not exist"))
        elif not os.access(path, os.R_OK):
            out.append(_error(key, f"{path} is not readable by this user (uid {os.getuid()})"))
    if out:
        return out
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(sip.tls_cert), str(sip.tls_key))
    except ssl.SSLError as err:
        reason = err.reason or str(err)
        if "KEY_VALUES_MISMATCH" in str(err) or reason == "KEY_VALUES_MISMATCH":
            return [_error("sip.tls_key", f"{sip.tls_key} does not match {sip.tls_cert}")]
        return [_error("sip.tls_cert", f"cannot load the certificate and key: {reason}")]
    out.append(_ok("sip.tls_cert", f"{sip.tls_cert} and its key match"))
    try:
        decoded = ssl._ssl._test_decode_cert(str(sip.tls_cert))  # noqa: SLF001 - stdlib only
        not_after = ssl.cert_time_to_seconds(decoded["notAfter"])
    except (ssl.SSLError, KeyError, ValueError, AttributeError):
        return out
    left = (not_after - (time.time() if now is None else now)) / 86400
    if left < 0:
        out.append(_error("sip.tls_cert", f"expired {-left:.0f} days ago ({decoded['notAfter']})"))
    elif left < CERT_EXPIRY_WARNING_DAYS:
        out.append(_warn("sip.tls_cert", f"expires in {left:.0f} days ({decoded['notAfter']})"))
    return out


# -- prompts -------------------------------------------------------------------------------------


def check_prompts(config: Config) -> list[Finding]:
    from dialbridge.prompts import KEYS, PromptCatalogue, PromptError, catalogue_from_config
    from dialbridge.prompts.catalogue import CACHE_FORMAT

    try:
        catalogue = catalogue_from_config(config)
    except (PromptError, ValueError) as err:
        return [_error("ivr.language", str(err))]
    out: list[Finding] = []
    wanted = [("ivr.language", config.ivr.language)] + [
        (f"numbers.entries.{i}.language", e.language)
        for i, e in enumerate(config.numbers.entries)
        if e.language
    ]
    for key, language in wanted:
        if language not in catalogue.languages:
            out.append(_error(key, f"no prompts in {language!r} (available: "
                              f"{', '.join(catalogue.languages)})"))  # fmt: skip
    missing: list[str] = []
    for language in catalogue.languages:
        for key in sorted(KEYS):
            try:
                catalogue.text(key, language)  # placeholders fill in
            except (PromptError, KeyError, IndexError, ValueError) as err:
                out.append(_error("ivr.keys", f"prompt {language}/{key} cannot be worded: {err}"))
                continue
            recording = catalogue.override(key, language)
            if recording is not None:
                if not os.access(recording, os.R_OK):
                    out.append(_error("ivr.prompt_override_dir", f"{recording} is not readable"))
                continue
            cached = catalogue.cache_dir / CACHE_FORMAT / language
            name = catalogue._cache_name(key, catalogue.text(key, language), language)  # noqa: SLF001
            if not (cached / name).is_file():
                missing.append(f"{language}/{key}")
    tools = [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]
    if tools:
        level = _error if missing else _warn
        out.append(level("ivr.prompt_dir", f"{' and '.join(tools)} not installed (apt install "
                         "espeak-ng sox): prompts cannot be rendered"))  # fmt: skip
        return out
    # Prove rendering works: one prompt per language into a throw-away cache.
    with tempfile.TemporaryDirectory(prefix="dialbridge-check-") as tmp:
        probe = PromptCatalogue(tmp, None, catalogue.languages)
        for language in catalogue.languages:
            try:
                probe.path("goodbye", language)
            except PromptError as err:
                out.append(_error("ivr.language", f"rendering a {language} prompt failed: {err}"))
    cache_parent = _existing_parent(catalogue.cache_dir)
    if not os.access(cache_parent, os.W_OK):
        out.append(_error("ivr.prompt_dir", f"{catalogue.cache_dir} cannot be created or written "
                          f"({cache_parent} is not writable)"))  # fmt: skip
    total = len(catalogue.languages) * len(KEYS)
    if missing:
        out.append(
            _warn(
                "ivr.prompt_dir",
                f"{len(missing)} of {total} prompts not rendered yet in "
                f"{catalogue.cache_dir} (rendered on first use, or now with "
                "`dialbridge prompts build`)",
            )  # fmt: skip
        )
    else:
        out.append(
            _ok("ivr.prompt_dir", f"all {total} prompts present ({', '.join(catalogue.languages)})")
        )
    return out


def _existing_parent(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


# -- store ---------------------------------------------------------------------------------------


def head_revision() -> str | None:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", "dialbridge.store:migrations")
    return ScriptDirectory.from_config(cfg).get_current_head()


async def check_store(config: Config) -> list[Finding]:
    from dialbridge.store.db import Database

    url = config.store.effective_url
    key = "store.url" if config.store.url else "store.data_dir"
    head = head_revision()
    if url.startswith("sqlite"):
        file = Path(url.split("///", 1)[1])
        if not file.exists():
            parent = _existing_parent(file.parent)
            if not os.access(parent, os.W_OK):
                return [_error(key, f"{file.parent} cannot be created ({parent} is not "
                               "writable by this user)")]  # fmt: skip
            return [_ok(key, f"{file} will be created and migrated at first start")]
        if not os.access(file, os.R_OK | os.W_OK):
            return [_error(key, f"{file} is not readable and writable by this user")]
    db = Database(url)
    try:
        try:
            await db.ping(timeout=5)
            revision = await db.current_revision()
        except Exception as err:  # any driver error: say which, with the URL's host
            return [_error(key, f"store unreachable: {type(err).__name__}: {err}")]
    finally:
        await db.close()
    if revision == head:
        return [_ok(key, f"store reachable and migrated (revision {head})")]
    if revision is None:
        return [_ok(key, "store reachable and empty: tables are created at first start")]
    known = _known_revisions()
    if revision in known:
        return [_warn(key, f"store at revision {revision}; it is migrated to {head} at start")]
    return [_error(key, f"store at unknown revision {revision} (written by a newer dialbridge?)")]


def _known_revisions() -> set[str]:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", "dialbridge.store:migrations")
    return {s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions()}


# -- all together --------------------------------------------------------------------------------


async def run_checks(config: Config, *, ports: bool = True, prompts: bool = True) -> list[Finding]:
    findings = check_config(config)
    if ports:
        findings += check_ports(config)
    findings += check_tls(config)
    if prompts:
        findings += await asyncio.to_thread(check_prompts, config)
    findings += await check_store(config)
    return findings


def exit_status(findings: Iterable[Finding]) -> int:
    return 1 if any(f.level == "error" for f in findings) else 0
