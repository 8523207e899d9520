"""The seam between the call layer and media: commands in, replies and events out.

Theory of operation
-------------------
The call layer never touches sessions, sockets or frames. It sends small immutable *command*
values to a media engine and receives *events*; both are plain dataclasses holding only
strings, numbers, tuples and enums, so they can cross a process boundary unchanged when media
moves to one worker process per core. Today :class:`MediaEngine` runs the commands in-process,
on the caller's event loop, and :class:`MediaControl` is the typed, awaitable face the call
layer uses.

Life of a leg::

    created = await media.create_session("leg-1")          # binds an even RTP port (+1 RTCP)
    # ... the SIP layer writes created.host/rtp_port into its SDP, gets the peer's answer ...
    await media.set_remote("leg-1", RtpParameters("PCMU", 0, telephone_event_pt=101,
                                                 remote_rtp=("203.0.113.5", 4000)))
    await media.play("leg-1", "p1", prompt="/var/lib/dialbridge/enter_pin.wav")
    await media.bridge("leg-1", "leg-2")
    await media.mute("leg-1", True)                          # leg-1's audio no longer reaches leg-2
    await media.close_session("leg-1")

Events: :class:`DtmfReceived` (a key press, once, when it ends), :class:`DtmfStarted` (key
down: stop a prompt), :class:`PlaybackFinished`, :class:`MediaTimeout`,
:class:`MediaResumed`, :class:`RtcpStats`, :class:`RemoteAddressLatched`.

Errors: a command naming an unknown session, or otherwise impossible, raises
:class:`MediaCommandError` (a local error of the caller). Nothing a peer sends can make a
command fail: remote garbage is dropped and counted inside the sessions.

Every session is ticked by one shared :class:`~dialbridge.media.session.MediaClock`: a
bridged pair by its :class:`~dialbridge.media.bridge.Bridge`, a lone leg (IVR) by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from dialbridge.media.bridge import Bridge, tick_alone
from dialbridge.media.dataplane import native as native_dataplane
from dialbridge.media.playback import (
    TONES,
    Pause,
    PlaybackFinished,
    PlayMode,
    Prompt,
    load_prompt,
)
from dialbridge.media.ports import PortAllocator, bind_rtp_sockets
from dialbridge.media.session import (
    DtmfReceived,
    DtmfStarted,
    MediaClock,
    MediaResumed,
    MediaSession,
    MediaTimeout,
    RemoteAddressLatched,
    RtcpStats,
    RtpEndpoint,
    RtpParameters,
)

__all__ = [
    "BridgeLegs",
    "CloseSession",
    "CreateSession",
    "DtmfReceived",
    "DtmfStarted",
    "MediaCommandError",
    "MediaControl",
    "MediaEngine",
    "MediaResumed",
    "MediaTimeout",
    "Mute",
    "Play",
    "PlayMode",
    "PlaybackFinished",
    "RemoteAddressLatched",
    "RtcpStats",
    "RtpParameters",
    "SendDtmf",
    "SessionCreated",
    "SetRemoteDescription",
    "Stop",
    "UnbridgeLegs",
]

log = logging.getLogger(__name__)


class MediaCommandError(ValueError):
    """The command cannot be carried out (unknown session, bad prompt, ...): a local error."""


# -- commands -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateSession:
    """Allocate a leg's RTP (and RTCP) port; media starts with the remote description."""

    session_id: str
    media_timeout: float | None = None  # seconds without RTP before MediaTimeout


@dataclass(frozen=True, slots=True)
class SessionCreated:
    """Reply to :class:`CreateSession`: what goes into our SDP (c= and m= lines)."""

    session_id: str
    host: str
    rtp_port: int
    rtcp_port: int | None  # None with rtcp-mux


@dataclass(frozen=True, slots=True)
class SetRemoteDescription:
    """The negotiated parameters (after offer/answer); again on a re-INVITE."""

    session_id: str
    params: RtpParameters


@dataclass(frozen=True, slots=True)
class Play:
    """Queue one playback to the leg. Exactly one of prompt (a WAV path), tone (a name in
    :data:`~dialbridge.media.playback.TONES`) or pause (seconds of silence)."""

    session_id: str
    playback_id: str
    prompt: str | None = None
    tone: str | None = None
    pause: float | None = None
    mode: PlayMode = PlayMode.REPLACE


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop one playback, or all of the leg's playbacks (``playback_id=None``)."""

    session_id: str
    playback_id: str | None = None


@dataclass(frozen=True, slots=True)
class BridgeLegs:
    a: str
    b: str


@dataclass(frozen=True, slots=True)
class UnbridgeLegs:
    session_id: str  # either leg of the bridge


@dataclass(frozen=True, slots=True)
class Mute:
    """Stop (or resume) forwarding the audio *from* this leg to the leg it is bridged with.
    The other leg keeps receiving packets (comfort silence)."""

    session_id: str
    muted: bool = True


@dataclass(frozen=True, slots=True)
class SendDtmf:
    """Send digits as RFC 4733 events on this leg (if telephone-event was negotiated)."""

    session_id: str
    digits: str
    duration: float = 0.1


@dataclass(frozen=True, slots=True)
class CloseSession:
    session_id: str


Command = (
    CreateSession
    | SetRemoteDescription
    | Play
    | Stop
    | BridgeLegs
    | UnbridgeLegs
    | Mute
    | SendDtmf
    | CloseSession
)
Event = DtmfReceived | DtmfStarted | PlaybackFinished | MediaTimeout | MediaResumed | RtcpStats
MediaEvent = Event | RemoteAddressLatched


# -- the in-process engine --------------------------------------------------------------------


class _Leg:
    """Sockets of one session; the core exists once the remote description is known."""

    __slots__ = ("session_id", "port", "rtp", "rtcp", "core", "media_timeout", "pending")

    def __init__(self, session_id: str, port: int, media_timeout: float) -> None:
        self.session_id = session_id
        self.port = port
        self.rtp: RtpEndpoint | None = None
        self.rtcp: RtpEndpoint | None = None
        self.core: MediaSession | None = None
        self.media_timeout = media_timeout
        self.pending: list[Play] = []  # plays asked for before media started


class _NativeRtpSocket:
    """The RTP socket of a leg whose datagrams the C data plane reads once per tick
    (``_dataplane.drain``) instead of the event loop; quacks like an ``RtpEndpoint`` for the
    engine (``session``, ``transport.sendto``, ``transport.close``)."""

    __slots__ = ("sock", "fd", "session")

    def __init__(self, sock: socket.socket, native) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.session: MediaSession | None = None
        native.enable_timestamps(self.fd)  # kernel arrival times for the jitter estimate

    @property
    def transport(self) -> _NativeRtpSocket:
        return self

    def sendto(self, data: bytes, addr: tuple) -> None:
        with contextlib.suppress(OSError):  # a full buffer or unreachable peer loses it
            self.sock.sendto(data, addr)

    def close(self) -> None:
        self.sock.close()


class _Unconfigured:
    """Stand-in core for a leg whose remote description has not arrived: drops datagrams."""

    def receive_rtp(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        pass

    receive_rtcp = receive_rtp


class MediaEngine:
    """Runs media commands in this process on one event loop (uvloop works unchanged)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port_low: int = 10000,
        port_high: int = 20000,
        rtcp_mux: bool = False,
        media_timeout: float = 30.0,
        rtcp_interval: float = 5.0,
        session_options: dict | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        native: bool = True,
    ) -> None:
        self.host = host
        # The C data plane (dataplane.py) when built and not turned off: it reads the RTP
        # sockets once per tick and runs bridged calls' steady state; None = all Python.
        self.native = native_dataplane() if native else None
        self.rtcp_interval = rtcp_interval
        self.session_options = dict(session_options or {})
        self.session_options.setdefault("native", self.native is not None)
        self.ports = PortAllocator(port_low, port_high, rtcp_mux=rtcp_mux)
        self.media_timeout = media_timeout
        self.loop = loop or asyncio.get_running_loop()
        self.legs: dict[str, _Leg] = {}
        self.bridges: dict[str, Bridge] = {}  # session id -> its bridge (both legs)
        self._subscribers: list[Callable[[MediaEvent], None]] = []
        self.clock = MediaClock(self.loop, self._tick)
        self._wall_offset = time.time() - self.loop.time()
        self.tick_errors = 0

    # -- commands --------------------------------------------------------------------------

    async def execute(self, command: Command) -> SessionCreated | None:
        """Carry out one command. Only :class:`CreateSession` has a reply."""
        handler = getattr(self, "_do_" + type(command).__name__, None)
        if handler is None:
            raise MediaCommandError(f"unknown command {command!r}")
        return await handler(command)

    def _leg(self, session_id: str) -> _Leg:
        leg = self.legs.get(session_id)
        if leg is None:
            raise MediaCommandError(f"no media session {session_id!r}")
        return leg

    def _core(self, session_id: str) -> MediaSession:
        core = self._leg(session_id).core
        if core is None:
            raise MediaCommandError(f"session {session_id!r} has no remote description yet")
        return core

    async def _do_CreateSession(self, cmd: CreateSession) -> SessionCreated:
        if cmd.session_id in self.legs:
            raise MediaCommandError(f"media session {cmd.session_id!r} exists")
        port, rtp_sock, rtcp_sock = bind_rtp_sockets(self.ports, self.host)
        leg = _Leg(cmd.session_id, port, cmd.media_timeout or self.media_timeout)
        placeholder = _Unconfigured()
        if self.native is not None:
            leg.rtp = _NativeRtpSocket(rtp_sock, self.native)
        else:
            _, leg.rtp = await self.loop.create_datagram_endpoint(
                lambda: RtpEndpoint(placeholder, rtcp=False, time=self.loop.time), sock=rtp_sock
            )
        if rtcp_sock is not None:
            _, leg.rtcp = await self.loop.create_datagram_endpoint(
                lambda: RtpEndpoint(placeholder, rtcp=True, time=self.loop.time), sock=rtcp_sock
            )
        self.legs[cmd.session_id] = leg
        self.clock.start()
        return SessionCreated(
            cmd.session_id, self.host, port, None if rtcp_sock is None else port + 1
        )

    async def _do_SetRemoteDescription(self, cmd: SetRemoteDescription) -> None:
        leg = self._leg(cmd.session_id)
        if leg.core is None:
            leg.core = MediaSession(
                cmd.session_id,
                cmd.params,
                now=self.loop.time(),
                wallclock_offset=self._wall_offset,
                media_timeout=leg.media_timeout,
                rtcp_interval=self.rtcp_interval,
                **self.session_options,
            )
            leg.rtp.session = leg.core
            if isinstance(leg.rtp, _NativeRtpSocket) and leg.core._native is not None:
                leg.core.rtp_fd = leg.rtp.fd  # C may send this leg's RTP itself
            if leg.rtcp is not None:
                leg.rtcp.session = leg.core
            for play in leg.pending:
                self._start_play(leg.core, play)
            leg.pending.clear()
        else:
            leg.core.set_parameters(cmd.params)

    async def _do_Play(self, cmd: Play) -> None:
        leg = self._leg(cmd.session_id)
        self._source(cmd)  # validate now, so a bad prompt fails the command
        if leg.core is None:
            leg.pending.append(cmd)
        else:
            self._start_play(leg.core, cmd)

    def _source(self, cmd: Play) -> Prompt | Pause:
        given = [x is not None for x in (cmd.prompt, cmd.tone, cmd.pause)]
        if sum(given) != 1:
            raise MediaCommandError("Play needs exactly one of prompt, tone or pause")
        try:
            if cmd.prompt is not None:
                return load_prompt(cmd.prompt)
            if cmd.tone is not None:
                return TONES[cmd.tone]
        except (OSError, ValueError, KeyError) as exc:
            raise MediaCommandError(f"cannot play {cmd.prompt or cmd.tone!r}: {exc}") from exc
        return Pause(cmd.pause)

    def _start_play(self, core: MediaSession, cmd: Play) -> None:
        core.player.play(cmd.playback_id, self._source(cmd), cmd.mode)

    async def _do_Stop(self, cmd: Stop) -> None:
        leg = self._leg(cmd.session_id)
        if leg.core is None:
            leg.pending = [p for p in leg.pending if cmd.playback_id not in (None, p.playback_id)]
        else:
            leg.core.player.stop(cmd.playback_id)

    async def _do_BridgeLegs(self, cmd: BridgeLegs) -> None:
        a, b = self._core(cmd.a), self._core(cmd.b)
        for sid in (cmd.a, cmd.b):
            if sid in self.bridges:
                raise MediaCommandError(f"session {sid!r} is already bridged")
        bridge = Bridge(a, b)
        self.bridges[cmd.a] = self.bridges[cmd.b] = bridge

    async def _do_UnbridgeLegs(self, cmd: UnbridgeLegs) -> None:
        bridge = self.bridges.get(cmd.session_id)
        if bridge is None:
            raise MediaCommandError(f"session {cmd.session_id!r} is not bridged")
        bridge.close()
        for core in bridge.sessions:
            self.bridges.pop(core.session_id, None)

    async def _do_Mute(self, cmd: Mute) -> None:
        bridge = self.bridges.get(cmd.session_id)
        if bridge is None:
            raise MediaCommandError(f"session {cmd.session_id!r} is not bridged")
        bridge.mute(self._core(cmd.session_id), cmd.muted)

    async def _do_SendDtmf(self, cmd: SendDtmf) -> None:
        core = self._core(cmd.session_id)
        if not core.send_dtmf(cmd.digits, cmd.duration):
            raise MediaCommandError(f"no telephone-event on session {cmd.session_id!r}")

    async def _do_CloseSession(self, cmd: CloseSession) -> None:
        leg = self.legs.pop(cmd.session_id, None)
        if leg is None:
            return  # closing twice is harmless
        bridge = self.bridges.get(cmd.session_id)
        if bridge is not None:
            bridge.close()
            for core in bridge.sessions:
                self.bridges.pop(core.session_id, None)
        if leg.core is not None:
            leg.core.close(self.loop.time())
            self._flush(leg)
        for ep in (leg.rtp, leg.rtcp):
            if ep is not None and ep.transport is not None:
                ep.transport.close()
        self.ports.release(leg.port)
        if not self.legs:
            self.clock.stop()

    # -- events ----------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[MediaEvent], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event; returns the unsubscribe function."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def _publish(self, event: MediaEvent) -> None:
        for cb in list(self._subscribers):
            try:
                cb(event)
            except Exception:  # a subscriber's bug must not stop the media clock
                log.exception("media event subscriber failed on %r", event)

    # -- the tick --------------------------------------------------------------------------

    def _drain(self, now: float) -> None:
        """Read every RTP socket (C data plane): the common packets go straight into the
        native playouts, the rest to the Python receive path with their arrival time."""
        legs = [(leg.rtp.fd, leg.core) for leg in self.legs.values() if leg.rtp is not None]
        try:
            rest = self.native.drain(legs, now, time.time())
        except Exception:  # a bug must not stop the clock; the packets of this tick are lost
            self.tick_errors += 1
            log.exception("media drain failed")
            return
        for core, data, addr, arrival in rest:
            try:
                core.receive_rtp(data, addr, arrival)
            except Exception:
                self.tick_errors += 1
                log.exception("media receive failed for session %s", core.session_id)

    def _tick(self, now: float) -> None:
        if self.native is not None:
            self._drain(now)
        bridges = self.bridges
        for leg in self.legs.values():
            core = leg.core
            if core is None:
                continue
            try:
                bridge = bridges.get(leg.session_id)
                if bridge is None:
                    tick_alone(core, now)
                elif bridge.a is core:  # a bridge is ticked once, from its first leg
                    bridge.tick(now)
                core.handle_timers(now)
            except Exception:  # a bug in one call must not silence every other call
                self.tick_errors += 1
                log.exception("media tick failed for session %s", leg.session_id)
        # Send what the tick produced: RTP inline (two packets per call per tick), the rare
        # rest (RTCP, events) through _flush.
        for leg in self.legs.values():
            core = leg.core
            if core is None:
                continue
            outbox = core.outbox
            if outbox:
                sendto = leg.rtp.transport.sendto
                for data, addr in outbox:
                    sendto(data, addr)
                outbox.clear()
            if core.rtcp_outbox or core.events or core.player.events:
                self._flush(leg)

    def _flush(self, leg: _Leg) -> None:
        core = leg.core
        if core.outbox:
            sendto = leg.rtp.transport.sendto
            for data, addr in core.outbox:
                sendto(data, addr)
            core.outbox.clear()
        if core.rtcp_outbox:
            ep = leg.rtcp if leg.rtcp is not None else leg.rtp
            for data, addr in core.rtcp_outbox:
                ep.transport.sendto(data, addr)
            core.rtcp_outbox.clear()
        if core.events or core.player.events:
            for event in core.pop_events():
                self._publish(event)

    async def close(self) -> None:
        for sid in list(self.legs):
            await self._do_CloseSession(CloseSession(sid))
        self.clock.stop()


class MediaControl:
    """The call layer's handle on media: typed awaitable methods that send commands."""

    def __init__(self, engine: MediaEngine) -> None:
        self._engine = engine
        self._ids = itertools.count(1)

    async def create_session(
        self, session_id: str, media_timeout: float | None = None
    ) -> SessionCreated:
        return await self._engine.execute(CreateSession(session_id, media_timeout))

    async def set_remote(self, session_id: str, params: RtpParameters) -> None:
        await self._engine.execute(SetRemoteDescription(session_id, params))

    async def play(
        self,
        session_id: str,
        playback_id: str | None = None,
        *,
        prompt: str | None = None,
        tone: str | None = None,
        pause: float | None = None,
        mode: PlayMode = PlayMode.REPLACE,
    ) -> str:
        """Queue a playback; returns its id (for :meth:`stop` and PlaybackFinished)."""
        pid = playback_id or f"pb-{next(self._ids)}"
        await self._engine.execute(Play(session_id, pid, prompt, tone, pause, mode))
        return pid

    async def stop(self, session_id: str, playback_id: str | None = None) -> None:
        await self._engine.execute(Stop(session_id, playback_id))

    async def bridge(self, a: str, b: str) -> None:
        await self._engine.execute(BridgeLegs(a, b))

    async def unbridge(self, session_id: str) -> None:
        await self._engine.execute(UnbridgeLegs(session_id))

    async def mute(self, session_id: str, muted: bool = True) -> None:
        await self._engine.execute(Mute(session_id, muted))

    async def send_dtmf(self, session_id: str, digits: str, duration: float = 0.1) -> None:
        await self._engine.execute(SendDtmf(session_id, digits, duration))

    async def close_session(self, session_id: str) -> None:
        await self._engine.execute(CloseSession(session_id))

    def subscribe(self, callback: Callable[[MediaEvent], None]) -> Callable[[], None]:
        return self._engine.subscribe(callback)

    async def events(self) -> AsyncIterator[MediaEvent]:
        """All events, as an async iterator (ends when the consumer stops iterating)."""
        queue: asyncio.Queue[MediaEvent] = asyncio.Queue()
        unsubscribe = self.subscribe(queue.put_nowait)
        try:
            while True:
                yield await queue.get()
        finally:
            unsubscribe()
