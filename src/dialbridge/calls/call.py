"""The B2BUA call: one call owns its legs, and the scenario API lives here.

Theory of operation
-------------------
* A :class:`Call` starts with the INVITE that created it (its *inbound* leg: the PSTN caller on
  dial-in, Jigasi on dial-out) and gains outbound legs by dialling (:meth:`Call.dial_jigasi`,
  :meth:`Call.dial_trunk`). Every :class:`Leg` is one SIP dialog (or INVITE transaction) plus
  one media session; the call's media sessions are bridged by the media engine.
* **No leg outlives its call.** :meth:`Call.hangup` ends every leg the way its state asks for
  (RFC 3261: a final response for an unanswered inbound INVITE, CANCEL for an unanswered
  outbound one — §9.1, and a BYE after the 2xx if the CANCEL lost the race — and BYE for an
  answered dialog, §15), closes every media session and cancels the scenario task.
* **What ends a call:** the inbound leg ending (BYE, CANCEL, failure), an answered outbound leg
  ending, no RTP on a leg for ``limits.media_timeout_seconds``, the duration limit, the IVR
  time limit, or the scenario returning.
* A scenario is an ``async def scenario(call)``; it reads like the flow it implements:
  ``await call.answer()``, ``await call.say("enter_pin")``, ``pin = await call.collect(...)``,
  ``jigasi = await call.dial_jigasi(room, password=...)``, ``await call.bridge(jigasi)``.
  When the call ends under it, the scenario task is cancelled (``CancelledError``).
* Events (:class:`Ringing`, :class:`EarlyMedia`, :class:`Answered`, :class:`Failed`,
  :class:`HungUp`, :class:`Digit`, :class:`Info`, :class:`MediaTimedOut`,
  :class:`DurationWarning`) are small frozen values; :meth:`Call.events` yields them to whoever
  runs the in-call controls.
* Every log line of a call carries its id (``[call-id] ...``) through :class:`CallLog`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dialbridge.media.control import PlayMode, RtpParameters
from dialbridge.media.dtmf import parse_dtmf_relay
from dialbridge.metrics import METRICS
from dialbridge.sip import sdp as sdplib
from dialbridge.sip.ua import (
    ByeReceived,
    CallFailed,
    CallStateError,
    Credentials,
    DialogEnded,
    DialogHandle,
    IncomingCall,
    InfoReceived,
    OfferReceived,
    OutgoingCall,
    SipError,
)

if TYPE_CHECKING:
    from dialbridge.calls.engine import CallEngine
    from dialbridge.config import TrunkEntry

log = logging.getLogger("dialbridge.calls")

_call_ids = itertools.count(1)

PSTN_CODECS = (sdplib.PCMA, sdplib.PCMU, sdplib.OPUS)
# Jigasi: Opus first with RFC 6464 at id 1 (jigasi-protocol.md §9 item 4), G.711 as fallback.
JIGASI_CODECS = (sdplib.OPUS, sdplib.PCMU, sdplib.PCMA)


# -- errors -----------------------------------------------------------------------------------


class DialFailed(Exception):
    """An outbound leg ended without a 2xx: ``status`` is the SIP code (408 for our timeout)."""

    def __init__(self, status: int, reason: str = "") -> None:
        super().__init__(f"{status} {reason}".strip())
        self.status = status
        self.reason = reason


# -- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ringing:
    leg: str


@dataclass(frozen=True, slots=True)
class EarlyMedia:
    leg: str


@dataclass(frozen=True, slots=True)
class Answered:
    leg: str


@dataclass(frozen=True, slots=True)
class Failed:
    leg: str
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class HungUp:
    leg: str
    by: str  # "remote" (the peer ended it) or "local"
    cause: str


@dataclass(frozen=True, slots=True)
class Digit:
    leg: str
    digit: str
    source: str  # rfc4733, inband, info


@dataclass(frozen=True, slots=True)
class Info:
    leg: str
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class MediaTimedOut:
    leg: str
    silent_for: float


@dataclass(frozen=True, slots=True)
class DurationWarning:
    remaining: float  # seconds until the duration limit hangs up


CallEvent = (
    Ringing | EarlyMedia | Answered | Failed | HungUp | Digit | Info | MediaTimedOut
    | DurationWarning
)  # fmt: skip


#: The call the running task works for: set by the engine for each scenario task, inherited by
#: every task it starts, so log lines of lower layers can carry it too (:class:`CallIdFilter`).
current_call_id: contextvars.ContextVar[str] = contextvars.ContextVar("call_id", default="-")


class CallIdFilter(logging.Filter):
    """Adds ``record.call_id`` (from :data:`current_call_id`) to every record it sees; install
    it on a handler and use ``%(call_id)s`` in the format, or a JSON formatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "call_id"):
            record.call_id = current_call_id.get()
        return True


class CallLog(logging.LoggerAdapter):
    """Prefixes every line with the call id and passes it as ``extra['call_id']``."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs.setdefault("extra", {})["call_id"] = self.extra["call_id"]
        return f"[{self.extra['call_id']}] {msg}", kwargs


# -- legs -------------------------------------------------------------------------------------


class Leg:
    """One side of the call: a SIP dialog (or a pending INVITE) and its media session."""

    def __init__(self, call: Call, role: str, *, incoming: IncomingCall | None = None) -> None:
        self.call = call
        self.role = role  # "caller", "jigasi", "trunk"
        self.id = f"{call.id}-{role}-{len(call.legs) + 1}"
        self.incoming = incoming
        self.outgoing: OutgoingCall | None = None
        self.dialog: DialogHandle | None = None
        self.state = "new"  # new, ringing, early, answered, ended
        self.local_sdp: sdplib.SessionDescription | None = None
        self.params: RtpParameters | None = None
        self.media_ready = False
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.digits: asyncio.Queue[str] = asyncio.Queue()
        self.last_stats: Any = None
        self._playbacks: dict[str, asyncio.Future[bool]] = {}
        self._watcher: asyncio.Task | None = None

    @property
    def codec(self) -> str:
        return self.params.codec if self.params else "PCMA"

    @property
    def answered(self) -> bool:
        return self.state == "answered"

    async def send_info(self, content_type: str, body: bytes | str) -> int:
        """INFO in this leg's dialog (e.g. Jigasi's JSON); returns the final status."""
        if self.dialog is None or self.dialog.is_terminated:
            raise CallStateError(f"leg {self.id} has no live dialog")
        response = await self.dialog.info(content_type, body)
        return response.status

    async def hangup(self, status: int | None = None, reason: str | None = None) -> None:
        """End this leg as its state requires (final response / CANCEL / BYE)."""
        if self.state == "ended":
            return
        was, self.state = self.state, "ended"
        headers = [("Reason", reason)] if reason else []
        try:
            if self.dialog is not None and not self.dialog.is_terminated:
                await asyncio.wait_for(self.dialog.bye(headers=headers), 5)
            elif self.incoming is not None and was in ("new", "ringing", "early"):
                if not self.incoming.cancelled.done():
                    await self.incoming.reject(status or 480, headers=headers)
            elif self.outgoing is not None and not self.outgoing.final.done():
                await self.outgoing.cancel()
                # §9.1: a 2xx may cross our CANCEL; such a dialog must still get its BYE.
                self.call.engine.spawn(self._bye_if_answered_late(self.outgoing))
        except (SipError, TimeoutError, CallStateError) as exc:
            self.call.log.info("ending leg %s: %s", self.id, exc)
        finally:
            self._settle("local")

    async def _bye_if_answered_late(self, outgoing: OutgoingCall) -> None:
        with contextlib.suppress(TimeoutError, CallFailed, SipError):
            dialog = await asyncio.wait_for(outgoing.answered(), 32)
            await dialog.bye()

    def _settle(self, by: str, cause: str = "") -> None:
        self.state = "ended"
        if not self.ended.done():
            self.ended.set_result(by)
            self.call._emit(HungUp(self.id, by, cause))
        for fut in self._playbacks.values():
            if not fut.done():
                fut.set_result(False)
        if self._watcher is not None and self._watcher is not asyncio.current_task():
            self._watcher.cancel()

    def _watch_dialog(self) -> None:
        assert self.dialog is not None
        self._watcher = self.call.engine.spawn(self._dialog_events(self.dialog))

    async def _dialog_events(self, dialog: DialogHandle) -> None:
        async for event in dialog.events():
            if isinstance(event, InfoReceived):
                self._on_info(event)
            elif isinstance(event, OfferReceived) and event.request.body and event.answer:
                await self._on_reoffer(event.request.body, event.answer)
            elif isinstance(event, ByeReceived | DialogEnded):
                if self.state != "ended":
                    cause = "remote bye" if isinstance(event, ByeReceived) else event.reason
                    self._settle("remote", cause)
                    await self.call._leg_ended(self, cause)
                return

    async def _on_reoffer(self, offer: bytes, answer: bytes) -> None:
        """A re-INVITE/UPDATE with SDP (new address, hold): the UA answered it with our SDP;
        the media session follows the new description (RFC 3264 §8)."""
        try:
            negotiated = sdplib.negotiate(sdplib.parse_sdp(offer), sdplib.parse_sdp(answer),
                                          local_is_offerer=False)  # fmt: skip
        except (sdplib.SdpParseError, sdplib.OfferAnswerError) as exc:
            self.call.log.info("re-offer on %s not applied: %s", self.id, exc)
            return
        self.params = rtp_parameters(negotiated, inband_dtmf=self.role != "jigasi")
        await self.call.engine.media.set_remote(self.id, self.params)

    def _on_info(self, event: InfoReceived) -> None:
        if event.content_type in ("application/dtmf-relay", "application/dtmf"):
            try:
                digit = parse_dtmf_relay(event.body.decode("utf-8", "replace")).digit
            except ValueError:
                self.call.log.info("unparsable DTMF INFO on %s", self.id)
                return
            self._on_digit(digit, "info")
            return
        self.call._emit(Info(self.id, event.content_type, event.body))

    def _on_digit(self, digit: str, source: str) -> None:
        self.digits.put_nowait(digit)
        self.call._emit(Digit(self.id, digit, source))

    def _playback_finished(self, playback_id: str, completed: bool) -> None:
        fut = self._playbacks.pop(playback_id, None)
        if fut is not None and not fut.done():
            fut.set_result(completed)

    def __repr__(self) -> str:
        return f"<Leg {self.id} {self.state}>"


# -- the call ---------------------------------------------------------------------------------


class Call:
    """A B2BUA call and the scenario API (see the module docstring)."""

    def __init__(self, engine: CallEngine, incoming: IncomingCall, *, scenario: str,
                 direction: str, source_user: str | None, trunk: str | None) -> None:  # fmt: skip
        self.engine = engine
        self.config = engine.config
        self.id = f"{incoming.request.call_id[:12]}-{next(_call_ids)}"
        self.log = CallLog(log, {"call_id": self.id})
        self.scenario = scenario
        self.direction = direction
        self.source_user = source_user  # registered/authenticated SIP user (Jigasi)
        self.trunk = trunk
        self.legs: list[Leg] = []
        self.caller = Leg(self, "caller" if direction == "in" else "jigasi", incoming=incoming)
        self.legs.append(self.caller)
        self.incoming = incoming
        self.request_user = incoming.request_uri.user or ""
        from_addr = incoming.from_addr
        self.caller_number = from_addr.uri.user or ""
        self.caller_name = from_addr.display_name or ""
        self.language = engine.language_for(self.request_user)
        # CDR fields
        self.started_at = engine.clock()
        self.answered_at: float | None = None
        self.bridged_at: float | None = None
        self.ended_at: float | None = None
        self.room: str | None = None
        self.pin: str | None = None
        self.destination: str | None = None
        self.sip_status: int | None = None
        self.hangup_cause = ""
        self.hangup_side = ""
        self.bridged_with: Leg | None = None
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task | None = None
        self.history: list[CallEvent] = []
        self._subscribers: list[asyncio.Queue[CallEvent]] = []
        self._timers: list[asyncio.TimerHandle] = []
        self._ivr_timer: asyncio.TimerHandle | None = None
        self._watch_cancel = engine.spawn(self._watch_inbound_cancel())

    # -- events ---------------------------------------------------------------------------

    def _emit(self, event: CallEvent) -> None:
        self.history.append(event)
        for queue in self._subscribers:
            queue.put_nowait(event)

    async def events(self) -> AsyncIterator[CallEvent]:
        """Events from now on, until the call has ended. Every iterator gets every event
        (the in-call controls and a test may both listen); ``history`` keeps them all."""
        queue: asyncio.Queue[CallEvent] = asyncio.Queue()
        self._subscribers.append(queue)
        try:
            while True:
                while not queue.empty():
                    yield queue.get_nowait()
                if self.ended.done():
                    return
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    {getter, self.ended}, return_when=asyncio.FIRST_COMPLETED
                )
                if getter in done:
                    yield getter.result()
                else:
                    getter.cancel()
        finally:
            self._subscribers.remove(queue)

    # -- the inbound leg ----------------------------------------------------------------------

    async def ring(self) -> None:
        """180 Ringing on the inbound leg."""
        if self.caller.state == "new":
            await self.incoming.ring()
            self.caller.state = "ringing"

    async def answer(self) -> None:
        """200 OK on the inbound leg with our SDP; media starts."""
        if self.caller.state == "answered":
            return
        await self._prepare_inbound_media()
        dialog = await self.incoming.answer(self.caller.local_sdp.to_bytes())
        self.caller.dialog = dialog
        self.caller.state = "answered"
        self.answered_at = self.engine.clock()
        if self.incoming.offer is None:
            ack = await asyncio.wait_for(asyncio.shield(dialog.acked), 32)
            await self._apply_inbound_answer(ack.body)
        self.caller._watch_dialog()
        self._emit(Answered(self.caller.id))
        self.log.info("answered %s (%s)", self.caller.id, self.caller.codec)
        limit = self.config.limits.max_ivr_seconds
        self._ivr_timer = asyncio.get_running_loop().call_later(limit, self._ivr_time_up)

    async def progress(self) -> None:
        """183 Session Progress with our SDP (early media towards the inbound leg)."""
        await self._prepare_inbound_media()
        await self.incoming.progress(self.caller.local_sdp.to_bytes())
        self.caller.state = "early"

    async def reject(self, status: int, reason: str | None = None) -> None:
        """Refuse the inbound INVITE (``reason`` goes into a Reason header, RFC 3326)."""
        self.sip_status = status
        header = None
        if reason:
            text = reason.replace('"', "'")
            header = f'SIP;cause={status};text="{text}"'
        await self.hangup(reason or f"rejected {status}", side="dialbridge", status=status,
                          reason_header=header)  # fmt: skip

    async def _prepare_inbound_media(self) -> None:
        leg = self.caller
        if leg.local_sdp is not None:
            return
        created = await self.engine.media.create_session(
            leg.id, media_timeout=self.config.limits.media_timeout_seconds
        )
        self.engine.register_leg(leg)
        codecs = PSTN_CODECS if leg.role == "caller" else JIGASI_CODECS
        local = self.engine.local_media(created, codecs)
        offer = self.incoming.offer
        if offer is None:
            leg.local_sdp = sdplib.create_offer(local)
            return
        try:
            remote = sdplib.parse_sdp(offer)
            leg.local_sdp = sdplib.create_answer(remote, local)
            negotiated = sdplib.negotiate(remote, leg.local_sdp, local_is_offerer=False)
        except (sdplib.SdpParseError, sdplib.OfferAnswerError) as exc:
            self.log.info("cannot answer the offer: %s", exc)
            await self.hangup("unacceptable SDP", side="dialbridge", status=488)
            raise asyncio.CancelledError from exc
        await self._set_remote(leg, negotiated)

    async def _apply_inbound_answer(self, body: bytes) -> None:
        remote = sdplib.parse_sdp(body)
        negotiated = sdplib.negotiate(self.caller.local_sdp, remote, local_is_offerer=True)
        await self._set_remote(self.caller, negotiated)

    async def _set_remote(self, leg: Leg, negotiated: sdplib.NegotiatedAudio) -> None:
        leg.params = rtp_parameters(negotiated, inband_dtmf=leg.role != "jigasi")
        await self.engine.media.set_remote(leg.id, leg.params)
        leg.media_ready = True

    async def _watch_inbound_cancel(self) -> None:
        # shield: cancelling this watcher must not cancel the UA's future
        await asyncio.shield(self.incoming.cancelled)
        if not self.ended.done():
            self.log.info("the %s cancelled", self.caller.role)
            self.caller._settle("remote", "cancel")
            await self.hangup("cancelled", side=self.caller.role)

    # -- prompts and digits ---------------------------------------------------------------------

    async def say(self, key: str, *, leg: Leg | None = None, barge_in: bool = False) -> bool:
        """Play prompt ``key`` to a leg (the inbound one by default) and wait for its end.

        With ``barge_in`` a key press stops the prompt (the digit stays queued for
        :meth:`collect`). Returns True if it played to the end."""
        leg = leg or self.caller
        path = self.engine.prompts.path(key, self.language, leg.codec)
        return await self.play(leg, prompt=str(path), barge_in=barge_in)

    async def play(self, leg: Leg, *, prompt: str | None = None, tone: str | None = None,
                   pause: float | None = None, barge_in: bool = False,
                   mode: PlayMode = PlayMode.REPLACE) -> bool:  # fmt: skip
        if leg.state == "ended":
            return False
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        pid = f"{leg.id}-pb{next(_call_ids)}"
        leg._playbacks[pid] = fut
        await self.engine.media.play(leg.id, pid, prompt=prompt, tone=tone, pause=pause, mode=mode)
        if not barge_in:
            return await fut
        while not fut.done():
            getter = asyncio.ensure_future(leg.digits.get())
            done, _ = await asyncio.wait({fut, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                # Put the digit back in front: collect() reads it first.
                rest = [getter.result()]
                while not leg.digits.empty():
                    rest.append(leg.digits.get_nowait())
                for d in rest:
                    leg.digits.put_nowait(d)
                await self.engine.media.stop(leg.id, pid)
                return False
            getter.cancel()
        return fut.result()

    async def collect(self, max_digits: int = 32, terminator: str = "#", timeout: float = 10,
                      *, leg: Leg | None = None) -> str | None:  # fmt: skip
        """Digits until ``terminator`` (not included) or ``max_digits``; each key must come
        within ``timeout`` seconds of the previous one (or of the call to collect).

        Returns the digits ("" when only the terminator was pressed), or None when the caller
        typed nothing before the timeout; a partial entry that times out is discarded
        (reference-scenarios.md §2.3) and also gives None."""
        leg = leg or self.caller
        digits = ""
        while True:
            try:
                digit = await asyncio.wait_for(leg.digits.get(), timeout)
            except TimeoutError:
                return None
            if digit == terminator:
                return digits
            digits += digit
            if len(digits) >= max_digits:
                return digits

    def flush_digits(self, leg: Leg | None = None) -> None:
        leg = leg or self.caller
        while not leg.digits.empty():
            leg.digits.get_nowait()

    # -- store and policies (thin, so scenarios stay readable) ----------------------------------

    async def lookup_pin(self, pin: str) -> str | None:
        """The room JID a PIN admits to (store or remote mapper), or None."""
        return await self.engine.lookup_pin(pin, self)

    async def pin_guard(self) -> Any:
        verdict = await self.engine.pin_guard.verdict(self.caller_number)
        if verdict.refused:
            self.engine.metrics["pin_lockouts"] += 1
        if verdict.refused or verdict.delay:
            policy = self.engine.pin_guard.policy
            caller_over = verdict.caller_failures >= (
                policy.refuse_after if verdict.refused else policy.delay_after
            )
            METRICS.pin_guarded(
                "caller" if caller_over else "global", "refuse" if verdict.refused else "delay"
            )
        return verdict

    async def pin_failed(self) -> None:
        await self.engine.pin_guard.record_failure(self.caller_number)
        self.engine.metrics["pin_failures"] += 1

    async def touch_pin(self, pin: str) -> None:
        if not self.config.ivr.mapper_url:
            await self.engine.mappings.touch(pin)

    # -- outbound legs ----------------------------------------------------------------------

    async def dial_jigasi(self, room: str, *, password: str | None = None,
                          tenant: str | None = None, ringback: bool = True) -> Leg:  # fmt: skip
        """INVITE Jigasi's registered contact over the flow it registered on, with the room
        header (jigasi-protocol.md §1.1–1.4). Ringback plays to the caller until it answers
        (up to ``jigasi.answer_timeout``). Raises :class:`DialFailed`."""
        cfg = self.config.jigasi
        contacts = [r for r in self.engine.jigasi_contacts() if r.flow is not None]
        if not contacts:
            self.log.warning("Jigasi (%s) is not registered", cfg.user)
            raise DialFailed(480, "Jigasi not registered")
        contact = contacts[0]
        headers = [(cfg.room_header, room)]
        if password:
            headers.append((cfg.password_header, password))
        if cfg.domain_base:
            headers.append((cfg.domain_base_header, cfg.domain_base))
        if tenant and cfg.send_tenant:
            headers.append((cfg.tenant_header, tenant))
        display = self.engine.display_name(self)
        user = self.caller_number if not cfg.mask_caller and self.caller_number else "phone"
        from_ = f'"{_quote(display)}" <sip:{user}@{self.config.sip.domain}>'
        self.room = room
        leg = Leg(self, "jigasi")
        self.legs.append(leg)
        ringback_pb = None
        if ringback and self.caller.media_ready:
            ringback_pb = asyncio.ensure_future(
                self.play(self.caller, tone=self.config.ivr.ringback_tone)
            )
        try:
            return await self._dial(leg, contact.uri, headers=headers, from_=from_,
                                    via_flow=contact.flow, codecs=JIGASI_CODECS,
                                    timeout=cfg.answer_timeout)  # fmt: skip
        finally:
            if ringback_pb is not None:
                with contextlib.suppress(Exception):
                    await self.engine.media.stop(self.caller.id)
                ringback_pb.cancel()

    async def dial_trunk(self, number: str, *, caller_id: str | None = None,
                         trunk: TrunkEntry | None = None, relay: bool = True) -> Leg:  # fmt: skip
        """INVITE ``number`` through a trunk (digest if it asks). With ``relay``, its ringing
        and early media are passed on to the unanswered inbound leg. Raises :class:`DialFailed`."""
        trunk = trunk or self.engine.dialout_trunk()
        if trunk is None:
            raise DialFailed(503, "no trunk for dial-out")
        user = number.lstrip("+") if trunk.strip_plus else number
        user = trunk.prefix + user
        transport = "" if trunk.transport == "udp" else f";transport={trunk.transport}"
        target = f"sip:{user}@{trunk.host}:{trunk.port}{transport}"
        from_user = caller_id or "anonymous"
        from_ = f"<sip:{from_user}@{self.config.sip.domain}>"
        credentials = Credentials(trunk.username, trunk.password or "") if trunk.username else None
        self.destination = number
        leg = Leg(self, "trunk")
        self.legs.append(leg)
        return await self._dial(leg, target, headers=[], from_=from_, codecs=PSTN_CODECS,
                                timeout=trunk.ring_timeout, credentials=credentials,
                                relay=relay)  # fmt: skip

    async def _dial(self, leg: Leg, target: str, *, headers: list[tuple[str, str]], from_: str,
                    codecs: tuple, timeout: float, via_flow: Any = None,
                    credentials: Credentials | None = None, relay: bool = False) -> Leg:  # fmt: skip
        engine = self.engine
        created = await engine.media.create_session(
            leg.id, media_timeout=self.config.limits.media_timeout_seconds
        )
        engine.register_leg(leg)
        leg.local_sdp = sdplib.create_offer(engine.local_media(created, codecs))
        self.log.info("dialling %s as %s", target, leg.id)
        try:
            outgoing = await engine.ua.invite(
                target, sdp=leg.local_sdp.to_bytes(), headers=headers, from_=from_,
                via_flow=via_flow, credentials=credentials,
            )  # fmt: skip
        except SipError as exc:
            leg._settle("local", str(exc))
            raise DialFailed(503, str(exc)) from exc
        leg.outgoing = outgoing
        leg.state = "ringing"
        try:
            final = await asyncio.wait_for(self._follow(leg, outgoing, relay), timeout)
        except TimeoutError:
            self.log.info("%s: no answer after %.0f s", leg.id, timeout)
            await leg.hangup()
            self._emit(Failed(leg.id, 408, "no answer"))
            raise DialFailed(408, "no answer") from None
        except asyncio.CancelledError:
            await leg.hangup()
            raise
        if not 200 <= final.status < 300:
            leg._settle("remote", f"{final.status}")
            self._emit(Failed(leg.id, final.status, final.reason))
            self.log.info("%s failed: %d %s", leg.id, final.status, final.reason)
            raise DialFailed(final.status, final.reason)
        leg.dialog = outgoing.dialog
        if final.body:
            await self._apply_leg_answer(leg, final.body)
        leg.state = "answered"
        leg._watch_dialog()
        self._emit(Answered(leg.id))
        self.log.info("%s answered (%s)", leg.id, leg.codec)
        return leg

    async def _follow(self, leg: Leg, outgoing: OutgoingCall, relay: bool) -> Any:
        async for response in outgoing.responses():
            status = response.status
            if status >= 200:
                return response
            if status in (180, 181, 182):
                self._emit(Ringing(leg.id))
                if relay and self.caller.state in ("new", "ringing"):
                    await self.ring()
            if status > 100 and response.body:  # 183 (or any 1xx) with SDP: early media
                await self._apply_leg_answer(leg, response.body)
                leg.state = "early"
                self._emit(EarlyMedia(leg.id))
                if relay and self.caller.state in ("new", "ringing", "early"):
                    await self.progress()
                    await self._bridge_media(leg)
        raise DialFailed(500, "no final response")

    async def _apply_leg_answer(self, leg: Leg, body: bytes) -> None:
        try:
            negotiated = sdplib.negotiate(leg.local_sdp, sdplib.parse_sdp(body),
                                          local_is_offerer=True)  # fmt: skip
        except (sdplib.SdpParseError, sdplib.OfferAnswerError) as exc:
            self.log.info("%s: bad SDP answer: %s", leg.id, exc)
            return
        leg.params = rtp_parameters(negotiated, inband_dtmf=leg.role != "jigasi")
        await self.engine.media.set_remote(leg.id, leg.params)
        leg.media_ready = True

    # -- bridging and limits ----------------------------------------------------------------

    async def bridge(self, other: Leg) -> None:
        """Connect the inbound leg and ``other`` both ways (mixing, RFC 6464 levels); stops
        the IVR clock and starts the duration limit."""
        await self._bridge_media(other)
        if self.bridged_at is None:
            self.bridged_at = self.engine.clock()
        if self._ivr_timer is not None:
            self._ivr_timer.cancel()
            self._ivr_timer = None
        self._arm_duration_limit()
        self.log.info("bridged %s <-> %s", self.caller.id, other.id)

    async def _bridge_media(self, other: Leg) -> None:
        if self.bridged_with is other:
            return
        await self.engine.media.stop(self.caller.id)
        await self.engine.media.stop(other.id)
        await self.engine.media.bridge(self.caller.id, other.id)
        self.bridged_with = other

    def _arm_duration_limit(self) -> None:
        limits = self.config.limits
        loop = asyncio.get_running_loop()
        warn_at = limits.max_call_seconds - limits.warn_before_end_seconds
        if limits.warn_before_end_seconds and warn_at > 0:
            self._timers.append(
                loop.call_later(
                    warn_at, self._emit, DurationWarning(limits.warn_before_end_seconds)
                )
            )
        self._timers.append(loop.call_later(limits.max_call_seconds, self._duration_up))

    def _duration_up(self) -> None:
        self.log.info("maximum call duration reached")
        self.engine.spawn(self.hangup("max duration", side="dialbridge"))

    def _ivr_time_up(self) -> None:
        if self.bridged_at is None and not self.ended.done():
            self.log.info("maximum time in the IVR reached")
            self.engine.spawn(self.hangup("ivr time limit", side="dialbridge"))

    def _media_timeout(self, leg: Leg, silent_for: float) -> None:
        self._emit(MediaTimedOut(leg.id, silent_for))
        self.log.info("no RTP from %s for %.1f s", leg.id, silent_for)
        self.engine.spawn(self.hangup("media timeout", side=leg.role))

    async def wait_ended(self) -> None:
        await asyncio.shield(self.ended)

    # -- ending -----------------------------------------------------------------------------

    async def _leg_ended(self, leg: Leg, cause: str) -> None:
        if leg is self.caller or leg.answered or leg is self.bridged_with:
            await self.hangup(cause, side=leg.role)

    async def hangup(self, cause: str = "normal", *, side: str = "dialbridge",
                     status: int | None = None, reason_header: str | None = None) -> None:  # fmt: skip
        """End the call: every leg, every media session, the scenario."""
        if self.ended.done():
            return
        self.hangup_cause = self.hangup_cause or cause
        self.hangup_side = self.hangup_side or side
        self.ended_at = self.engine.clock()
        self.ended.set_result(None)
        self.log.info("hang-up: %s (by %s)", cause, side)
        for timer in self._timers:
            timer.cancel()
        if self._ivr_timer is not None:
            self._ivr_timer.cancel()
        self._watch_cancel.cancel()
        current = asyncio.current_task()
        if self.task is not None and self.task is not current and not self.task.done():
            self.task.cancel()
        results = await asyncio.gather(
            *(leg.hangup(status, reason_header) for leg in self.legs), return_exceptions=True
        )
        for leg, result in zip(self.legs, results, strict=True):
            if isinstance(result, BaseException):
                self.log.warning("ending %s failed: %r", leg.id, result)
        for leg in self.legs:
            with contextlib.suppress(Exception):
                await self.engine.media.close_session(leg.id)
            self.engine.unregister_leg(leg)

    def record(self) -> dict[str, Any]:
        """The CDR fields of this call."""
        end = self.ended_at or self.engine.clock()
        stats = [leg.last_stats for leg in self.legs if leg.last_stats is not None]
        loss = max((s.fraction_lost for s in stats), default=None)
        jitter = max((s.jitter_ms for s in stats), default=None)
        return {
            "call_id": self.id,
            "direction": self.direction,
            "scenario": self.scenario,
            "started_at": self.started_at,
            "answered_at": self.answered_at,
            "bridged_at": self.bridged_at,
            "ended_at": end,
            "duration": (end - self.bridged_at) if self.bridged_at else 0.0,
            "did": self.request_user if self.direction == "in" else None,
            "destination": self.destination,
            "caller": self.engine.mask(self.caller_number) if self.direction == "in" else None,
            "room": self.room,
            "pin": self.pin,
            "sip_status": self.sip_status,
            "hangup_cause": self.hangup_cause or "normal",
            "hangup_side": self.hangup_side or "dialbridge",
            "loss_fraction": loss,
            "jitter_ms": jitter,
        }


# -- helpers ----------------------------------------------------------------------------------


def rtp_parameters(negotiated: sdplib.NegotiatedAudio, *, inband_dtmf: bool) -> RtpParameters:
    """What signalling negotiated, in the media engine's terms."""
    name = negotiated.codec.encoding
    codec = "opus" if name.lower() == "opus" else name.upper()
    return RtpParameters(
        codec=codec,
        payload_type=negotiated.payload_type,
        telephone_event_pt=negotiated.telephone_event_payload_type,
        audio_level_id=negotiated.extmap_ids.get(sdplib.SSRC_AUDIO_LEVEL),
        remote_rtp=(negotiated.remote_address, negotiated.remote_port),
        remote_rtcp=(negotiated.remote_address, negotiated.remote_rtcp_port),
        rtcp_mux=negotiated.rtcp_mux,
        # In-band detection only where no telephone-event was agreed (PSTN gateways).
        inband_dtmf=inband_dtmf and negotiated.telephone_event_payload_type is None,
    )


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def now() -> float:
    return time.time()
