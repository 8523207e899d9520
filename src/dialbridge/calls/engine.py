"""The call engine: SIP user agent + media engine + store, wired into calls.

Theory of operation
-------------------
* The UA hands every new INVITE to :meth:`CallEngine.route`. Past ``limits.max_concurrent_calls``
  it is refused 503 at once; otherwise the routing rules pick a scenario, a :class:`Call` is
  made, and the scenario runs as the call's task. When the task ends (or the call ends under
  it), the call is hung up completely and its CDR row written.
* Media events arrive on one subscription and go to the leg owning the session: digits to its
  queue, playback ends to their waiters, RTCP figures to the CDR, "no RTP" to a hang-up.
* Everything a scenario needs from outside (PIN lookup, mapping refresh, PIN guard, dial-out
  policy, caller-ID choice, masking, prompts) is reached through the engine, so a custom
  scenario gets the same services as the built-ins.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import phonenumbers

from dialbridge.calls.call import Call, Leg, current_call_id
from dialbridge.calls.routing import CallRouter, CallSource
from dialbridge.calls.scenario import PromptCatalogue
from dialbridge.config import Config, TrunkEntry
from dialbridge.media.control import (
    DtmfReceived,
    MediaControl,
    MediaEngine,
    MediaTimeout,
    PlaybackFinished,
    RtcpStats,
)
from dialbridge.metrics import METRICS
from dialbridge.sip import sdp as sdplib
from dialbridge.sip.security import Trunk
from dialbridge.sip.ua import CallStateError, IncomingCall, UserAgent, UserAgentConfig
from dialbridge.store.cdr import CallRecords, Cdr
from dialbridge.store.pin_guard import PinGuard, PinGuardPolicy

if TYPE_CHECKING:
    from dialbridge.app import Services

log = logging.getLogger("dialbridge.calls")

MASK = "\u2022"


def mask_number(number: str) -> str:
    """``+4930123456712`` → ``+49 ••• •••• 12``: the country and the last two digits only."""
    digits = "".join(c for c in number if c.isdigit())
    if len(digits) < 5:
        return "anonymous" if not digits else MASK * 3
    country = ""
    if number.strip().startswith("+") or len(digits) > 10:
        with contextlib.suppress(phonenumbers.NumberParseException):
            parsed = phonenumbers.parse("+" + digits, None)
            country = f"+{parsed.country_code} "
    return f"{country}{MASK * 3} {MASK * 4} {digits[-2:]}"


class CallEngine:
    def __init__(self, config: Config, *, ua: UserAgent, media: MediaControl, mappings: Any,
                 dialout: Any, numbers: Any, pin_guard: PinGuard, cdrs: CallRecords,
                 prompts: PromptCatalogue, clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.config = config
        self.ua = ua
        self.media = media
        self.mappings = mappings
        self.dialout = dialout
        self.numbers = numbers
        self.pin_guard = pin_guard
        self.cdrs = cdrs
        self.prompts = prompts
        self.clock = clock
        self.router = CallRouter(config.routes)
        self.calls: dict[str, Call] = {}
        self.legs: dict[str, Leg] = {}
        self.metrics: collections.Counter[str] = collections.Counter()
        self._tasks: set[asyncio.Task] = set()
        self._unsubscribe = media.subscribe(self._on_media_event)
        self.http: Any = None  # httpx.AsyncClient, made on first remote mapper lookup

    # -- plumbing ------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def register_leg(self, leg: Leg) -> None:
        self.legs[leg.id] = leg

    def unregister_leg(self, leg: Leg) -> None:
        self.legs.pop(leg.id, None)

    def _on_media_event(self, event: Any) -> None:
        sid = getattr(event, "session_id", None)
        leg = self.legs.get(sid) if sid else None
        if leg is None:
            return
        if isinstance(event, DtmfReceived):
            leg._on_digit(event.digit, event.source)
        elif isinstance(event, PlaybackFinished):
            leg._playback_finished(event.playback_id, event.completed)
        elif isinstance(event, RtcpStats):
            leg.last_stats = event
        elif isinstance(event, MediaTimeout):
            leg.call._media_timeout(leg, event.silent_for)

    async def close(self) -> None:
        """Hang up every call and wait for its scenario to finish and its CDR to be written."""
        calls = list(self.calls.values())
        for call in calls:
            with contextlib.suppress(Exception):
                await call.hangup("shutdown", side="dialbridge")
        pending = [c.task for c in calls if c.task is not None and not c.task.done()]
        if pending:
            await asyncio.wait(pending, timeout=5)
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._unsubscribe()
        if self.http is not None:
            await self.http.aclose()

    # -- routing ---------------------------------------------------------------------------------

    async def route(self, incoming: IncomingCall) -> None:
        """The UA's router: every new INVITE comes here."""
        self.metrics["invites"] += 1
        if len(self.calls) >= self.config.limits.max_concurrent_calls:
            self.metrics["refused_busy"] += 1
            log.info("503 to %s: %d calls active", incoming.request.call_id, len(self.calls))
            with contextlib.suppress(CallStateError):
                await incoming.reject(503, headers=[("Retry-After", "30")])
            return
        source = CallSource(
            trunk=incoming.trunk.name if incoming.trunk else None,
            user=incoming.auth_user or self._registered_user(incoming),
        )
        user = incoming.request_uri.user or ""
        route = self.router.match(source, user)
        if route is None:
            log.info("no route for %s from %s: 404", user, source)
            with contextlib.suppress(CallStateError):
                await incoming.reject(404)
            return
        direction = "out" if route.scenario_name == "dial_out" else "in"
        call = Call(self, incoming, scenario=route.scenario_name, direction=direction,
                    source_user=source.user, trunk=source.trunk)  # fmt: skip
        self.calls[call.id] = call
        self.metrics[f"calls_{direction}"] += 1
        call.log.info("%s call to %s from %s → %s", direction, user, source, route.scenario_name)
        call.task = asyncio.current_task()
        current_call_id.set(call.id)  # this task and every task it starts
        try:
            await route.scenario(call)
        except asyncio.CancelledError:
            if not call.ended.done():
                raise
        except Exception:  # a scenario bug costs this call, never the engine
            call.log.exception("scenario %s failed", route.scenario_name)
            await call.hangup("scenario error", side="dialbridge", status=500)
        finally:
            await self._finish(call)

    async def _finish(self, call: Call) -> None:
        with contextlib.suppress(Exception):
            await call.hangup("scenario ended", side="dialbridge")
        record = call.record()
        METRICS.call_finished(record)
        try:
            await self.cdrs.add(Cdr(**record))
        except Exception:  # the store may be down: the call is over anyway
            call.log.exception("could not write the CDR")
        finally:
            self.calls.pop(call.id, None)

    def _registered_user(self, incoming: IncomingCall) -> str | None:
        if not incoming.registered:
            return None
        now = time.time()
        for user in self.config.users:
            for reach in self.ua.location.lookup(user.name, now):
                flow = reach.flow
                if flow is not None and flow.remote == incoming.flow.remote and \
                        flow.transport == incoming.flow.transport:  # fmt: skip
                    return user.name
        return None

    # -- services scenarios use ----------------------------------------------------------------

    def local_media(self, created: Any, codecs: tuple) -> sdplib.LocalMedia:
        return sdplib.LocalMedia(address=created.host, port=created.rtp_port, codecs=codecs)

    def jigasi_contacts(self) -> list:
        return self.ua.location.lookup(self.config.jigasi.user, time.time())

    def mask(self, number: str) -> str:
        return mask_number(number)

    def display_name(self, call: Call) -> str:
        cfg = self.config.jigasi
        caller = call.caller_number
        shown = self.mask(caller) if cfg.mask_caller else (caller or "anonymous")
        try:
            return cfg.display_name.format(caller=shown, did=call.request_user,
                                           name=call.caller_name)  # fmt: skip
        except (KeyError, IndexError, ValueError):
            return shown

    def language_for(self, did: str) -> str:
        digits = "".join(c for c in did if c.isdigit())
        for entry in self.config.numbers.entries:
            if (
                entry.language
                and digits
                and digits == "".join(c for c in entry.number if c.isdigit())
            ):
                return entry.language
        return self.config.ivr.language

    def dialout_trunk(self) -> TrunkEntry | None:
        return next((t for t in self.config.trunks if t.host), None)

    def caller_id_for(self, country: str) -> str | None:
        """The configured DID of the destination's country, else the default DID (issue 5 §5)."""
        numbers = [n for n in self.numbers.numbers if n.country not in ("SIP", "SIP_AUDIO_ONLY")]
        same = next((n for n in numbers if n.country == country), None)
        default = next((n for n in numbers if n.default), numbers[0] if numbers else None)
        chosen = same or default
        return chosen.e164 if chosen else None

    async def lookup_pin(self, pin: str, call: Call | None = None) -> str | None:
        ivr = self.config.ivr
        if not ivr.mapper_url:
            mapping = await self.mappings.for_pin(pin)
            return mapping.conference if mapping else None
        return await self._remote_lookup(pin, call)

    async def _remote_lookup(self, pin: str, call: Call | None) -> str | None:
        """GET mapper?id=PIN (or cid=): 3 s timeout; one retry unless 200 or 4xx
        (reference-scenarios.md §2.4, with the unguarded JSON parse fixed)."""
        import httpx

        ivr = self.config.ivr
        if self.http is None:
            self.http = httpx.AsyncClient(timeout=ivr.mapper_timeout)
        logger = call.log if call else log
        response = None
        for attempt in (1, 2):
            try:
                response = await self.http.get(ivr.mapper_url, params={ivr.mapper_param: pin})
            except httpx.HTTPError as exc:
                logger.info("mapper attempt %d failed: %s", attempt, exc)
                continue
            if response.status_code == 200 or 400 <= response.status_code < 500:
                break
            logger.info("mapper attempt %d: HTTP %d", attempt, response.status_code)
        if response is None or response.status_code != 200:
            return None
        try:
            conference = response.json().get("conference")
        except (ValueError, AttributeError):
            logger.info("mapper answered 200 without a JSON object")
            return None
        return conference if isinstance(conference, str) and conference else None


# -- building it ----------------------------------------------------------------------------------


def user_agent_config(config: Config) -> UserAgentConfig:
    from dialbridge.sip.location import JsonFileBindingStore

    sip = config.sip
    return UserAgentConfig(
        udp=sip.listeners("udp"),
        tcp=sip.listeners("tcp"),
        tls=sip.listeners("tls"),
        tls_cert=str(sip.tls_cert) if sip.tls_cert else None,
        tls_key=str(sip.tls_key) if sip.tls_key else None,
        advertised_host=sip.advertised_host,
        domain=sip.domain,
        users={u.name: u.password for u in config.users},
        trunks=[Trunk.from_cidrs(t.name, t.networks) for t in config.trunks],
        binding_store=JsonFileBindingStore(sip.bindings_file) if sip.bindings_file else None,
        flood_rate=sip.flood_rate,
        flood_burst=sip.flood_burst,
        digest_algorithms=tuple(sip.digest_algorithms),
    )


def prompt_catalogue(config: Config) -> PromptCatalogue:
    """The prompt catalogue (:mod:`dialbridge.prompts`: espeak-ng renders, admin recordings)."""
    from dialbridge.prompts import catalogue_from_config

    return catalogue_from_config(config)


def pin_guard_policy(config: Config) -> PinGuardPolicy:
    g = config.limits.pin_guard
    return PinGuardPolicy(
        window_seconds=g.window_seconds,
        delay_after=g.delay_after,
        refuse_after=g.refuse_after,
        delay_seconds=g.delay_seconds,
        max_delay_seconds=g.max_delay_seconds,
        global_window_seconds=g.global_window_seconds,
        global_delay_after=g.global_delay_after,
        global_refuse_after=g.global_refuse_after,
    )


@asynccontextmanager
async def open_call_engine(
    config: Config, services: Services, *, prompts: PromptCatalogue | None = None
) -> AsyncIterator[CallEngine]:
    """Start the SIP UA and the media engine on this loop, and the call engine over them."""
    sip = config.sip
    media_engine = MediaEngine(
        host=sip.rtp_host,
        port_low=sip.rtp_port_low,
        port_high=sip.rtp_port_high,
        media_timeout=config.limits.media_timeout_seconds,
    )
    ua = UserAgent(user_agent_config(config))
    engine = CallEngine(
        config,
        ua=ua,
        media=MediaControl(media_engine),
        mappings=services.mappings,
        dialout=services.dialout,
        numbers=services.numbers,
        pin_guard=PinGuard(services.db, pin_guard_policy(config)),
        cdrs=CallRecords(services.db),
        prompts=prompts or prompt_catalogue(config),
    )
    ua.router = engine.route
    await ua.start()
    try:
        yield engine
    finally:
        await engine.close()
        await ua.close()
        await media_engine.close()
