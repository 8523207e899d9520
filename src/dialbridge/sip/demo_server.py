"""A standalone dialbridge SIP endpoint for interop tests and benchmarks.

    python -m dialbridge.sip.demo_server --udp 127.0.0.1:5070 --tcp 127.0.0.1:5070 \\
        --tls 127.0.0.1:5071 --cert cert.pem --key key.pem --user jigasi:secret

It runs the registrar (digest for --user accounts) and a trivial UAS: every INVITE is answered
200 with an SDP answer to the offer (or an offer when the INVITE had none), INFO is answered
200 and, unless --no-info-reply, an INFO is sent back in the same dialog. It can call a
registered user (--call-registered AOR --after S, or the control socket). Everything it does
is printed on stdout as one line per event, ``EVENT <name> key=value ...``, flushed at once;
see docs/sip-stack.md for the list.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time

from .security import Trunk
from .ua import (
    DialogHandle,
    IncomingCall,
    InfoReceived,
    UserAgent,
    UserAgentConfig,
)

try:
    from . import sdp as _sdp
except ImportError:  # pragma: no cover - sdp.py is part of the package today
    _sdp = None

FIXED_PCMU_PORT = 40000


def emit(name: str, **fields: object) -> None:
    parts = [f"EVENT {name}"] + [f"{k}={_value(v)}" for k, v in fields.items()]
    sys.stdout.write(" ".join(parts) + "\n")
    sys.stdout.flush()


def _value(value: object) -> str:
    text = str(value)
    return text.replace(" ", "_") if text else "-"


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def media_for(offer: bytes | None, host: str) -> bytes:
    """Our SDP: an answer to ``offer`` or, when there is none, an offer."""
    if _sdp is not None:
        local = _sdp.LocalMedia(
            address=host,
            port=FIXED_PCMU_PORT,
            codecs=(_sdp.OPUS, _sdp.PCMU, _sdp.PCMA),
            session_id=int(time.time()),
        )
        try:
            if offer:
                return _sdp.create_answer(_sdp.parse_sdp(offer), local).to_bytes()
            return _sdp.create_offer(local).to_bytes()
        except ValueError as exc:  # SdpParseError / OfferAnswerError
            logging.getLogger(__name__).info("SDP: %s; answering PCMU", exc)
    return (
        f"v=0\r\no=demo 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {FIXED_PCMU_PORT} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        f"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
    ).encode()


class DemoServer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        users = dict(u.split(":", 1) for u in args.user)
        trunks = [Trunk.from_cidrs("trusted", args.trust)] if args.trust else []
        config = UserAgentConfig(
            udp=[_hostport(a) for a in args.udp],
            tcp=[_hostport(a) for a in args.tcp],
            tls=[_hostport(a) for a in args.tls],
            tls_cert=args.cert,
            tls_key=args.key,
            domain=args.domain,
            users=users,
            trunks=trunks,
            min_expires=args.min_expires,
            digest_algorithms=tuple(
                a.strip() for a in args.digest_algorithms.split(",") if a.strip()
            ),
            user_agent="dialbridge-demo",
            flood_rate=args.flood_rate,
            flood_burst=args.flood_rate * 4,
        )
        if args.bindings:
            from .location import JsonFileBindingStore

            config.binding_store = JsonFileBindingStore(args.bindings)
        self.ua = UserAgent(config, router=self.route)
        self.ua.location.on_update = self._report_registration
        self.dialogs: dict[str, DialogHandle] = {}
        self.stop = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()

    # -- inbound ------------------------------------------------------------------------------

    async def route(self, call: IncomingCall) -> None:
        quiet = self.args.quiet
        if not quiet:
            emit(
                "invite-in", call_id=call.request.call_id, uri=call.request.uri,
                src=f"{call.flow.transport}:{call.flow.remote[0]}:{call.flow.remote[1]}",
                sdp="yes" if call.offer else "no", auth=call.auth_user or "-",
            )  # fmt: skip
        if self.args.reject:
            await call.reject(self.args.reject)
            return
        if self.args.ring:
            await call.ring()
        if self.args.answer_delay > 0:
            done, _ = await asyncio.wait(
                [asyncio.ensure_future(asyncio.shield(call.cancelled))],
                timeout=self.args.answer_delay,
            )
            if done:
                emit("cancelled", call_id=call.request.call_id)
                return
        if call.cancelled.done():
            emit("cancelled", call_id=call.request.call_id)
            return
        host = call.flow.local[0]
        dialog = await call.answer(media_for(call.offer, host))
        self._watch(dialog, "in")

    # -- outbound -----------------------------------------------------------------------------

    async def call_registered(self, aor: str, *, bye_after: float | None = None) -> int:
        reachable = self.ua.location.lookup(aor, time.time())
        if not reachable:
            emit("call-out", aor=aor, status=404, reason="not-registered")
            return 404
        target = reachable[0]
        host = target.flow.local[0] if target.flow else "127.0.0.1"
        call = await self.ua.invite(
            target, sdp=media_for(None, host),
            headers=[(name, value) for name, value in (h.split(":", 1) for h in self.args.header)],
        )  # fmt: skip
        flow = call.flow
        async for response in call.responses():
            emit("call-out-response", call_id=call.request.call_id, status=response.status,
                 via=f"{flow.transport}:{flow.local[1]}->{flow.remote[0]}:{flow.remote[1]}")  # fmt: skip
        final = call.final.result()
        emit("call-out", aor=aor, call_id=call.request.call_id, status=final.status)
        if call.dialog is not None:
            self._watch(call.dialog, "out")
            if bye_after is not None:
                await asyncio.sleep(bye_after)
                await self.hang_up(call.dialog)
        return final.status

    async def hang_up(self, dialog: DialogHandle) -> None:
        response = await dialog.bye()
        emit("bye-out", call_id=dialog.call_id, status=response.status if response else "-")

    # -- dialogs ------------------------------------------------------------------------------

    def _watch(self, dialog: DialogHandle, direction: str) -> None:
        self.dialogs[dialog.call_id] = dialog
        if not self.args.quiet:
            emit("answered", call_id=dialog.call_id, direction=direction)
        self._spawn(self._follow(dialog))

    async def _follow(self, dialog: DialogHandle) -> None:
        quiet = self.args.quiet
        async for event in dialog.events():
            name = type(event).__name__
            if isinstance(event, InfoReceived):
                if not quiet:
                    emit("info-in", call_id=dialog.call_id, type=event.content_type or "-",
                         body=event.body.decode(errors="replace")[:200])  # fmt: skip
                if self.args.info_reply:
                    self._spawn(self._info_back(dialog, event.body))
            elif not quiet:
                emit(name, call_id=dialog.call_id)
        self.dialogs.pop(dialog.call_id, None)
        if not quiet:
            emit("ended", call_id=dialog.call_id, reason=dialog.terminated.result())

    async def _info_back(self, dialog: DialogHandle, body: bytes) -> None:
        response = await dialog.info("application/json", b'{"echo":true,"len":%d}' % len(body))
        if not self.args.quiet:
            emit("info-out", call_id=dialog.call_id, status=response.status)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _report_registration(self, aor: str, bindings: list) -> None:
        now = time.time()
        if not bindings:
            emit("unregistered", aor=aor)
        for binding in bindings:
            emit("registered", aor=aor, contact=binding.contact, flow=binding.flow_key,
                 expires=binding.remaining(now))  # fmt: skip

    # -- control socket -----------------------------------------------------------------------

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One command per line: ``call AOR [BYE_AFTER]``, ``bye CALL_ID``, ``bye-all``,
        ``info CALL_ID JSON``, ``list``, ``quit``. Each gets one reply line."""
        try:
            while line := (await reader.readline()).decode().strip():
                reply = await self._command(line)
                writer.write((reply + "\n").encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _command(self, line: str) -> str:
        words = line.split(maxsplit=2)
        try:
            if words[0] == "call":
                bye_after = float(words[2]) if len(words) > 2 else None
                status = await self.call_registered(words[1], bye_after=bye_after)
                return f"OK {status}"
            if words[0] == "bye":
                dialog = self.dialogs.get(words[1])
                if dialog is None:
                    return "ERR no-such-call"
                await self.hang_up(dialog)
                return "OK"
            if words[0] == "bye-all":
                for dialog in list(self.dialogs.values()):
                    await self.hang_up(dialog)
                return "OK"
            if words[0] == "info":
                dialog = self.dialogs.get(words[1])
                if dialog is None:
                    return "ERR no-such-call"
                response = await dialog.info(
                    "application/json", words[2] if len(words) > 2 else "{}"
                )
                return f"OK {response.status}"
            if words[0] == "list":
                return "OK " + " ".join(self.dialogs)
            if words[0] == "quit":
                self.stop.set()
                return "OK"
        except Exception as exc:  # noqa: BLE001 - report, keep serving
            return f"ERR {type(exc).__name__}: {exc}"
        return "ERR unknown-command"

    # -- main ---------------------------------------------------------------------------------

    async def run(self) -> None:
        await self.ua.start()
        servers = []
        if self.args.control:
            host, port = _hostport(self.args.control)
            server = await asyncio.start_server(self._control, host, port)
            servers.append(server)
        fields = {k: f"{h}:{p}" for k, (h, p) in self.ua.local_addresses.items()}
        if self.args.control:
            fields["control"] = self.args.control
        emit("ready", **fields)
        if self.args.call_registered:
            self._spawn(self._call_later())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self.stop.set)
        await self.stop.wait()
        for server in servers:
            server.close()
        await self.ua.close()
        emit("stopped")

    async def _call_later(self) -> None:
        deadline = time.monotonic() + self.args.after + self.args.wait_registered
        await asyncio.sleep(self.args.after)
        aor = self.args.call_registered
        while not self.ua.location.lookup(aor, time.time()) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await self.call_registered(aor, bye_after=self.args.bye_after)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dialbridge.sip.demo_server")
    parser.add_argument("--udp", action="append", default=[], metavar="HOST:PORT")
    parser.add_argument("--tcp", action="append", default=[], metavar="HOST:PORT")
    parser.add_argument("--tls", action="append", default=[], metavar="HOST:PORT")
    parser.add_argument("--cert", help="PEM certificate for TLS listeners")
    parser.add_argument("--key", help="PEM private key for TLS listeners")
    parser.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD",
                        help="registrar/digest account (repeatable)")  # fmt: skip
    parser.add_argument("--domain", default="127.0.0.1", help="SIP domain and digest realm")
    parser.add_argument("--trust", action="append", default=None, metavar="CIDR",
                        help="source networks accepted without digest (default 127.0.0.0/8; "
                             "pass --trust none to trust nobody)")  # fmt: skip
    parser.add_argument("--min-expires", type=int, default=60)
    parser.add_argument(
        "--digest-algorithms",
        default="MD5",
        metavar="LIST",
        help="digest algorithms challenged with, preferred first (e.g. SHA-256,MD5)",
    )
    parser.add_argument("--ring", action="store_true", help="send 180 before answering")
    parser.add_argument("--answer-delay", type=float, default=0.0, metavar="SECONDS",
                        help="wait before answering (a CANCEL in that time is honoured)")  # fmt: skip
    parser.add_argument("--reject", type=int, default=0, metavar="STATUS",
                        help="reject every INVITE with this status instead of answering")  # fmt: skip
    parser.add_argument("--no-info-reply", dest="info_reply", action="store_false",
                        help="do not send an INFO back when one arrives")  # fmt: skip
    parser.add_argument("--call-registered", metavar="AOR",
                        help="INVITE this registered user (sip:user@domain or user)")  # fmt: skip
    parser.add_argument("--after", type=float, default=1.0, metavar="SECONDS")
    parser.add_argument("--wait-registered", type=float, default=30.0, metavar="SECONDS",
                        help="how long --call-registered waits for the user to register")  # fmt: skip
    parser.add_argument("--bye-after", type=float, default=None, metavar="SECONDS",
                        help="hang up originated calls after this long")  # fmt: skip
    parser.add_argument("--header", action="append", default=[], metavar="NAME:VALUE",
                        help="extra header on originated INVITEs (repeatable)")  # fmt: skip
    parser.add_argument("--control", metavar="HOST:PORT", help="line-based control socket (TCP)")
    parser.add_argument(
        "--bindings", metavar="PATH", help="persist registrations in this JSON file"
    )
    parser.add_argument("--flood-rate", type=float, default=5000.0,
                        help="requests/s allowed per source IP")  # fmt: skip
    parser.add_argument(
        "--quiet", action="store_true", help="only ready/registered/call-out events"
    )
    parser.add_argument("--no-uvloop", dest="uvloop", action="store_false")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    if args.trust is None:
        args.trust = ["127.0.0.0/8"]
    elif args.trust == ["none"]:
        args.trust = []
    if not (args.udp or args.tcp or args.tls):
        args.udp = ["127.0.0.1:5060"]
    if args.tls and not (args.cert and args.key):
        parser.error("--tls needs --cert and --key")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    if args.uvloop:
        try:
            import uvloop
        except ImportError:
            uvloop = None
        if uvloop is not None:
            uvloop.run(DemoServer(args).run())
            return
    asyncio.run(DemoServer(args).run())


if __name__ == "__main__":
    main()
