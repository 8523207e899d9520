"""Stand-ins for the peers of a call, built from our own SIP and media modules.

They let ``dialbridge demo`` and the call tests run whole calls on one machine, on loopback:

* :class:`SimulatedJigasi` registers with digest (like Jigasi's SIP account), records every
  INVITE it gets (headers, the address it came from), answers after a delay or refuses with a
  status, echoes RTP back to its source, and can place a dial-out INVITE with a room header
  over its registration flow (jigasi-protocol.md §2.2).
* :class:`SimulatedPhone` is a PSTN caller behind a trunk: it dials a DID with a PCMA offer,
  sends a 1 kHz tone continuously and keys digits as RFC 4733 events or SIP INFO, and measures
  what it hears.
* :class:`SimulatedTrunk` is the carrier for dial-out: it records INVITEs, rings, then answers,
  refuses, or rings until cancelled.

:class:`RtpPort` is the tiny RTP endpoint under them: a UDP socket, G.711 audio, RFC 4733.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field

import numpy as np

from dialbridge.media.codecs import create_decoder, create_encoder
from dialbridge.media.dtmf import Rfc4733Sender, build_dtmf_relay
from dialbridge.media.rtp import RtpPacket, RtpParseError
from dialbridge.sip import sdp as sdplib
from dialbridge.sip.security import Trunk
from dialbridge.sip.ua import (
    CallFailed,
    Credentials,
    DialogHandle,
    IncomingCall,
    OutgoingCall,
    UserAgent,
    UserAgentConfig,
)

FRAME = 160
RATE = 8000


class RtpPort(asyncio.DatagramProtocol):
    """A UDP RTP endpoint: sends a tone every 20 ms (or echoes), counts what arrives."""

    def __init__(self, host: str, *, echo: bool = False, tone_hz: float = 1000.0) -> None:
        self.host = host
        self.echo = echo
        self.transport: asyncio.DatagramTransport | None = None
        self.remote: tuple[str, int] | None = None
        self.codec = "PCMA"
        self.pt = 8
        self.te_pt: int | None = None
        self.received = 0
        self.received_energy: list[float] = []
        self.tone_frames = 0  # received frames that carry our own tone (echoed back)
        self.tone_hz = tone_hz
        self.sent = 0
        self._dtmf = Rfc4733Sender()
        self._task: asyncio.Task | None = None
        self._seq = random.getrandbits(16)
        self._ts = random.getrandbits(32)
        self._ssrc = random.getrandbits(32)
        t = np.arange(FRAME * 50) / RATE
        self._tone = (np.sin(2 * np.pi * tone_hz * t) * 6000).astype(np.int16)
        self._encoder = None
        self._decoder = None

    async def open(self) -> int:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(self.host, 0)
        )
        return self.transport.get_extra_info("sockname")[1]

    @property
    def port(self) -> int:
        return self.transport.get_extra_info("sockname")[1]

    def start(self, remote: tuple[str, int], codec: str, pt: int, te_pt: int | None) -> None:
        self.remote, self.codec, self.pt, self.te_pt = remote, codec, pt, te_pt
        if codec in ("PCMA", "PCMU"):
            self._encoder = create_encoder(codec)
            self._decoder = create_decoder(codec)
        if not self.echo and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._send_loop())

    def stop_sending(self) -> None:
        """Go silent (no RTP at all), as a dead phone line would."""
        if self._task is not None:
            self._task.cancel()

    def send_digits(self, digits: str, duration_ms: int = 100, gap_ms: int = 80) -> float:
        """Queue RFC 4733 digits; returns roughly how long they take to go out."""
        self._dtmf.send(digits, duration_ms, gap_ms)
        return len(digits) * (duration_ms + gap_ms + 60) / 1000

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        index = 0
        while True:
            index += 1
            await asyncio.sleep(max(0.0, start + index * 0.02 - loop.time()))
            self._send_one(index)

    def _send_one(self, index: int) -> None:
        if self.transport is None or self.remote is None:
            return
        event = self._dtmf.next_packet(self._ts) if self.te_pt is not None else None
        if event is not None:
            packet = RtpPacket(self.te_pt, self._seq, event.timestamp, self._ssrc,
                               event.payload, marker=event.marker)  # fmt: skip
        else:
            start = (index * FRAME) % len(self._tone)
            pcm = self._tone[start : start + FRAME]
            if len(pcm) < FRAME:
                pcm = self._tone[:FRAME]
            payload = self._encoder.encode(pcm) if self._encoder else bytes(FRAME)
            packet = RtpPacket(self.pt, self._seq, self._ts, self._ssrc, payload)
        self.transport.sendto(packet.serialize(), self.remote)
        self.sent += 1
        self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + FRAME) & 0xFFFFFFFF

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) >= 2 and 200 <= data[1] <= 206:
            return  # RTCP (RFC 5761 §4)
        self.received += 1
        if self.echo and self.transport is not None:
            self.transport.sendto(data, addr)
            return
        if self._decoder is not None:
            try:
                packet = RtpPacket.parse(data)
            except RtpParseError:
                return
            if packet.payload_type == self.pt and packet.payload:
                pcm = self._decoder.decode(packet.payload).astype(np.float64)
                energy = float(np.sum(pcm * pcm))
                self.received_energy.append(float(np.sqrt(energy / len(pcm))))
                # Our own tone coming back (the echo through the meeting), not a prompt or
                # ringback: most of the frame's energy at tone_hz.
                if energy > 0:
                    spectrum = np.abs(np.fft.rfft(pcm)) ** 2
                    k = round(self.tone_hz * len(pcm) / RATE)
                    if spectrum[max(0, k - 1) : k + 2].sum() > 0.6 * spectrum.sum():
                        self.tone_frames += 1

    def heard_sound(self, threshold: float = 300.0) -> int:
        """Frames that carried more than faint noise."""
        return sum(1 for e in self.received_energy if e > threshold)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.transport is not None:
            self.transport.close()


def _offer(host: str, port: int, codecs: tuple) -> sdplib.SessionDescription:
    return sdplib.create_offer(sdplib.LocalMedia(address=host, port=port, codecs=codecs))


def start_media(rtp: RtpPort, local: sdplib.SessionDescription, remote_sdp: bytes,
                 *, local_is_offerer: bool) -> None:  # fmt: skip
    remote = sdplib.parse_sdp(remote_sdp)
    if local_is_offerer:
        neg = sdplib.negotiate(local, remote, local_is_offerer=True)
    else:
        neg = sdplib.negotiate(remote, local, local_is_offerer=False)
    rtp.start((neg.remote_address, neg.remote_port), neg.codec.encoding.upper(),
              neg.payload_type, neg.telephone_event_payload_type)  # fmt: skip


# -- Jigasi ---------------------------------------------------------------------------------------


@dataclass
class ReceivedInvite:
    request_uri: str
    headers: dict[str, str]  # as spelled on the wire (first instance)
    from_header: str
    source: tuple[str, int]
    at: float


@dataclass
class JigasiBehaviour:
    answer_after: float = 0.3  # Jigasi answers when the conference starts (§1.4)
    reject_with: int | None = None  # e.g. 486: the room could not be joined
    reject_first: int = 0  # refuse only the first N INVITEs (then answer)
    ring: bool = True


class SimulatedJigasi:
    def __init__(self, *, host: str, dialbridge: tuple[str, int], domain: str,
                 user: str = "jigasi", password: str = "jigasi-secret",
                 room_header: str = "Jitsi-Conference-Room") -> None:  # fmt: skip
        self.host = host
        self.dialbridge = dialbridge
        self.domain = domain
        self.user = user
        self.password = password
        self.room_header = room_header
        self.behaviour = JigasiBehaviour()
        self.invites: list[ReceivedInvite] = []
        self.dialogs: list[DialogHandle] = []
        self.rtp_ports: list[RtpPort] = []
        self.ua = UserAgent(
            UserAgentConfig(udp=[(host, 0)], domain=domain, user_agent="SimulatedJigasi"),
            router=self._on_invite,
        )
        self.registered_at: float | None = None

    @property
    def registrar_uri(self) -> str:
        return f"sip:{self.dialbridge[0]}:{self.dialbridge[1]}"

    async def start(self) -> None:
        await self.ua.start()
        response = await self.ua.register(
            self.registrar_uri, f"sip:{self.user}@{self.domain}",
            credentials=Credentials(self.user, self.password), expires=600,
        )  # fmt: skip
        if response.status != 200:
            raise RuntimeError(f"REGISTER failed: {response.status} {response.reason}")
        self.registered_at = time.monotonic()

    async def close(self) -> None:
        for rtp in self.rtp_ports:
            rtp.close()
        await self.ua.close()

    @property
    def audio_packets_received(self) -> int:
        return sum(p.received for p in self.rtp_ports)

    async def _on_invite(self, call: IncomingCall) -> None:
        req = call.request
        headers: dict[str, str] = {}
        for name, value in req.headers.items():
            headers.setdefault(name, value)
        self.invites.append(ReceivedInvite(req.uri, headers, req.headers.get("From") or "",
                                           call.flow.remote, time.monotonic()))  # fmt: skip
        b = self.behaviour
        if b.ring:
            await call.ring()
        if b.reject_with and (b.reject_first == 0 or len(self.invites) <= b.reject_first):
            await asyncio.sleep(min(b.answer_after, 0.2))
            await call.reject(b.reject_with)
            return
        await asyncio.sleep(b.answer_after)
        if call.cancelled.done():
            return
        rtp = RtpPort(self.host, echo=True)
        await rtp.open()
        self.rtp_ports.append(rtp)
        offer = sdplib.parse_sdp(call.offer)
        local = sdplib.LocalMedia(address=self.host, port=rtp.port,
                                  codecs=(sdplib.OPUS, sdplib.PCMU, sdplib.PCMA))  # fmt: skip
        answer = sdplib.create_answer(offer, local)
        dialog = await call.answer(answer.to_bytes())
        self.dialogs.append(dialog)
        start_media(rtp, answer, call.offer, local_is_offerer=False)

    async def dial_out(self, number: str, room: str, *, extra: dict[str, str] | None = None
                       ) -> tuple[OutgoingCall, RtpPort]:  # fmt: skip
        """Jigasi's dial-out INVITE (§2.2): to sip:<number>@<domain>, via its proxy."""
        rtp = RtpPort(self.host, echo=True)
        await rtp.open()
        self.rtp_ports.append(rtp)
        offer = _offer(self.host, rtp.port, (sdplib.OPUS, sdplib.PCMU, sdplib.PCMA))
        headers = {self.room_header: room, "JigasiCallDirection": "out", **(extra or {})}
        flow = await self.ua._flow_for(self.registrar_uri)
        call = await self.ua.invite(
            f"sip:{number}@{self.domain}", sdp=offer.to_bytes(), headers=headers,
            from_=f"<sip:{self.user}@{self.domain}>", via_flow=flow,
            credentials=Credentials(self.user, self.password),
        )  # fmt: skip
        call.local_offer = offer  # type: ignore[attr-defined]
        return call, rtp

    async def bye_all(self) -> None:
        for dialog in self.dialogs:
            if not dialog.is_terminated:
                await dialog.bye()


# -- PSTN caller ----------------------------------------------------------------------------------


@dataclass
class PhoneCall:
    outgoing: OutgoingCall
    rtp: RtpPort
    offer: sdplib.SessionDescription
    dialog: DialogHandle | None = None
    events: list[str] = field(default_factory=list)

    async def answered(self, timeout: float = 10) -> DialogHandle:
        self.dialog = await asyncio.wait_for(self.outgoing.answered(), timeout)
        start_media(self.rtp, self.offer, self.dialog.remote_sdp, local_is_offerer=True)
        return self.dialog

    async def keys(self, digits: str, *, method: str = "rfc4733") -> None:
        """Key digits: RFC 4733 in the RTP stream, or one SIP INFO per digit."""
        if method == "info":
            for d in digits:
                await self.dialog.info("application/dtmf-relay", build_dtmf_relay(d, 100))
            return
        await asyncio.sleep(self.rtp.send_digits(digits))

    async def ended(self, timeout: float) -> str:
        return await asyncio.wait_for(asyncio.shield(self.dialog.terminated), timeout)

    async def hangup(self) -> None:
        if self.dialog is not None and not self.dialog.is_terminated:
            await self.dialog.bye()
        elif not self.outgoing.final.done():
            await self.outgoing.cancel()
        self.rtp.close()


class SimulatedPhone:
    """A caller on the PSTN, arriving from the trunk's address."""

    def __init__(self, *, host: str, dialbridge: tuple[str, int]) -> None:
        self.host = host
        self.dialbridge = dialbridge
        self.ua = UserAgent(UserAgentConfig(udp=[(host, 0)], user_agent="SimulatedPhone"))

    async def start(self) -> None:
        await self.ua.start()

    async def close(self) -> None:
        await self.ua.close()

    async def dial(self, did: str, *, caller: str, name: str | None = None) -> PhoneCall:
        rtp = RtpPort(self.host)
        await rtp.open()
        offer = _offer(self.host, rtp.port, (sdplib.PCMA,))
        display = f'"{name}" ' if name else ""
        outgoing = await self.ua.invite(
            f"sip:{did}@{self.dialbridge[0]}:{self.dialbridge[1]}", sdp=offer.to_bytes(),
            from_=f"{display}<sip:{caller}@{self.host}>",
        )  # fmt: skip
        return PhoneCall(outgoing, rtp, offer)


# -- the carrier for dial-out ---------------------------------------------------------------------


@dataclass
class TrunkBehaviour:
    ring_for: float = 0.2
    reject_with: int | None = None
    answer: bool = True  # False: ring until cancelled
    early_media: bool = False  # 183 with SDP and audio (an announcement) before answering


class SimulatedTrunk:
    """``digest=(user, password)``: challenge every INVITE (401) instead of trusting loopback."""

    def __init__(self, *, host: str, digest: tuple[str, str] | None = None) -> None:
        self.host = host
        self.behaviour = TrunkBehaviour()
        self.invites: list[ReceivedInvite] = []
        self.cancelled: list[str] = []
        self.dialogs: list[DialogHandle] = []
        self.rtp_ports: list[RtpPort] = []
        self.authenticated_as: str | None = None
        trusted = [] if digest else [Trunk.from_cidrs("dialbridge", ["127.0.0.0/8"])]
        self.ua = UserAgent(
            UserAgentConfig(udp=[(host, 0)], user_agent="SimulatedTrunk", trunks=trusted,
                            users=dict([digest]) if digest else {}),
            router=self._on_invite,
        )  # fmt: skip

    async def start(self) -> int:
        await self.ua.start()
        return self.ua.local_addresses["udp"][1]

    async def close(self) -> None:
        for rtp in self.rtp_ports:
            rtp.close()
        await self.ua.close()

    async def _on_invite(self, call: IncomingCall) -> None:
        req = call.request
        headers: dict[str, str] = {}
        for name, value in req.headers.items():
            headers.setdefault(name, value)
        self.invites.append(ReceivedInvite(req.uri, headers, req.headers.get("From") or "",
                                           call.flow.remote, time.monotonic()))  # fmt: skip
        self.authenticated_as = call.auth_user
        await call.ring()
        b = self.behaviour
        rtp = answer = None
        if b.early_media:
            rtp, answer = await self._media_for(call)
            await call.progress(answer.to_bytes())
            start_media(rtp, answer, call.offer, local_is_offerer=False)
        waiter = asyncio.ensure_future(asyncio.shield(call.cancelled))
        try:
            await asyncio.wait_for(waiter, b.ring_for if b.answer or b.reject_with else 60)
            self.cancelled.append(req.call_id)
            return
        except TimeoutError:
            pass
        if b.reject_with:
            await call.reject(b.reject_with)
            return
        if rtp is None:
            rtp, answer = await self._media_for(call)
        with contextlib.suppress(Exception):
            dialog = await call.answer(answer.to_bytes())
            self.dialogs.append(dialog)
            start_media(rtp, answer, call.offer, local_is_offerer=False)

    async def _media_for(self, call: IncomingCall) -> tuple[RtpPort, sdplib.SessionDescription]:
        rtp = RtpPort(self.host)
        await rtp.open()
        self.rtp_ports.append(rtp)
        offer = sdplib.parse_sdp(call.offer)
        local = sdplib.LocalMedia(address=self.host, port=rtp.port,
                                  codecs=(sdplib.PCMA, sdplib.PCMU))  # fmt: skip
        return rtp, sdplib.create_answer(offer, local)


async def wait_for(predicate, timeout: float, step: float = 0.02) -> bool:  # noqa: ANN001
    """Poll ``predicate()`` until true or ``timeout`` (bounded; for tests and the demo)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return bool(predicate())


__all__ = [
    "CallFailed",
    "JigasiBehaviour",
    "PhoneCall",
    "ReceivedInvite",
    "RtpPort",
    "SimulatedJigasi",
    "SimulatedPhone",
    "SimulatedTrunk",
    "TrunkBehaviour",
    "wait_for",
]
