"""The admin page (``/admin``) and its JSON API (``/admin/api/...``).

Theory of operation
-------------------
* Served by the same HTTP server as the Meet services, but never through the Meet origin's
  nginx block (``dialbridge meet-config`` proxies only the four service paths). Reach it on the
  listener directly, through an SSH tunnel or a separate, restricted nginx location.
* Every API call needs ``Authorization: Bearer <admin.token>``; the page asks for the token
  once and keeps it in the tab's ``sessionStorage``. With no token configured the page and the
  API answer 404.
* The API is a read-only view of the running call engine (``app.state.call_engine``: calls,
  legs, registrations) plus the store's PINs and CDRs, and two actions: hang up a call, and set
  or delete a static PIN. Without a call engine in this process (``serve`` on an HTTP-only
  config, or tests) the live parts are empty and say so.
"""

from __future__ import annotations

import hmac
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from dialbridge import __version__
from dialbridge.web.errors import ApiError

PAGE = Path(__file__).with_name("admin") / "index.html"
STARTED = time.time()


def require_admin(request: Request) -> None:
    """``Authorization: Bearer <admin.token>``: 404 when the admin page is off (a scanner
    learns nothing), 401 without or with a wrong token (compared in constant time)."""
    token = request.app.state.services.config.admin.token
    if not token:
        raise ApiError(404, "not found")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise ApiError(401, "admin token required")


page_router = APIRouter(include_in_schema=False)
router = APIRouter(prefix="/admin/api", tags=["admin"], dependencies=[Depends(require_admin)])


@page_router.get("/admin")
async def admin_page(request: Request) -> HTMLResponse:
    if not request.app.state.services.config.admin.token:
        raise ApiError(404, "not found")
    return HTMLResponse(
        PAGE.read_text(encoding="utf-8"),
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
            "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
        },
    )


def _engine(request: Request) -> Any:
    return getattr(request.app.state, "call_engine", None)


def _services(request: Request) -> Any:
    return request.app.state.services


# -- live calls ----------------------------------------------------------------------------------


def _call_state(call: Any) -> str:
    if call.ended.done():
        return "ending"
    if call.bridged_at is not None:
        return "bridged"
    if call.answered_at is not None:
        return "ivr" if call.direction == "in" else "answered"
    return "ringing" if any(leg.state in ("ringing", "early") for leg in call.legs) else "setup"


def _muted(call: Any) -> bool | None:
    """The in-call controls' view of the phone side's mute state, when they expose one."""
    for holder in (call, getattr(call, "in_call", None), getattr(call, "controls", None)):
        value = getattr(holder, "muted", None) if holder is not None else None
        if isinstance(value, bool):
            return value
        controls = getattr(holder, "controls", None) if holder is not None else None
        if isinstance(getattr(controls, "muted", None), bool):
            return controls.muted
    return None


def call_view(call: Any, now: float) -> dict[str, Any]:
    engine = call.engine
    return {
        "id": call.id,
        "direction": call.direction,
        "scenario": call.scenario,
        "state": _call_state(call),
        "started_at": call.started_at,
        "duration": round(now - call.started_at, 1),
        "bridged_for": round(now - call.bridged_at, 1) if call.bridged_at else None,
        "room": call.room,
        "did": call.request_user if call.direction == "in" else None,
        "caller": engine.mask(call.caller_number) if call.direction == "in" else None,
        "destination": call.destination,
        "muted": _muted(call),
        "legs": [
            {
                "id": leg.id,
                "role": leg.role,
                "state": leg.state,
                "codec": leg.codec if leg.params else None,
                "loss": getattr(leg.last_stats, "fraction_lost", None),
                "jitter_ms": getattr(leg.last_stats, "jitter_ms", None),
            }
            for leg in call.legs
        ],
    }


@router.get("/calls")
async def live_calls(request: Request) -> JSONResponse:
    engine = _engine(request)
    now = time.time()
    calls = [] if engine is None else [call_view(c, now) for c in list(engine.calls.values())]
    calls.sort(key=lambda c: c["started_at"])
    return JSONResponse({"engine": engine is not None, "calls": calls})


@router.post("/calls/{call_id}/hangup")
async def hang_up(call_id: str, request: Request) -> JSONResponse:
    engine = _engine(request)
    call = engine.calls.get(call_id) if engine is not None else None
    if call is None:
        raise ApiError(404, f"no live call {call_id}")
    call.log.info("hung up from the admin page")
    await call.hangup("hung up by admin", side="dialbridge")
    return JSONResponse({"id": call_id, "state": "ended"})


# -- registrations -------------------------------------------------------------------------------


@router.get("/registrations")
async def registrations(request: Request) -> JSONResponse:
    config = _services(request).config
    engine = _engine(request)
    now = time.time()
    users = []
    for user in config.users:
        contacts = []
        if engine is not None:
            for reach in engine.ua.location.lookup(user.name, now):
                flow = reach.flow
                contacts.append(
                    {
                        "contact": reach.binding.contact,
                        "transport": flow.transport if flow else None,
                        "remote": f"{flow.remote[0]}:{flow.remote[1]}" if flow else None,
                        "expires_in": reach.binding.remaining(now),
                        "user_agent": reach.binding.user_agent,
                    }
                )
        users.append(
            {
                "name": user.name,
                "jigasi": user.name == config.jigasi.user,
                "registered": bool(contacts),
                "contacts": contacts,
            }
        )
    trunks = [
        {
            "name": t.name,
            "networks": t.networks,
            "target": f"{t.transport}:{t.host}:{t.port}" if t.host else None,
            "registration": "none (trunks are recognised by source network)",
        }
        for t in config.trunks
    ]
    return JSONResponse({"engine": engine is not None, "users": users, "trunks": trunks})


# -- PINs and numbers ----------------------------------------------------------------------------


def _mapping(m: Any) -> dict[str, Any]:
    return {
        "pin": m.pin,
        "conference": m.conference,
        "static": m.static,
        "last_used_at": m.last_used_at,
        "expires_at": m.expires_at,
    }


@router.get("/pins")
async def pins(request: Request, search: str | None = None, limit: int = 50) -> JSONResponse:
    rows = await _services(request).mappings.list(
        search=search or None, limit=max(1, min(limit, 500))
    )
    return JSONResponse({"pins": [_mapping(m) for m in rows]})


class StaticPin(BaseModel):
    conference: str = Field(description="room@conference.meet.example.com")
    pin: str
    force: bool = False


@router.post("/pins")
async def set_static_pin(body: StaticPin, request: Request) -> JSONResponse:
    from dialbridge.rooms import InvalidConference, parse_conference
    from dialbridge.store.mappings import PinUnavailable

    try:
        jid = parse_conference(body.conference).jid
        mapping = await _services(request).mappings.set_static(jid, body.pin, replace=body.force)
    except InvalidConference as err:
        raise ApiError(400, f"conference: {err}") from None
    except PinUnavailable as err:
        raise ApiError(409, str(err)) from None
    except ValueError as err:
        raise ApiError(400, f"pin: {err}") from None
    return JSONResponse(_mapping(mapping))


@router.delete("/pins/{pin}")
async def delete_pin(pin: str, request: Request) -> JSONResponse:
    if not await _services(request).mappings.delete(pin):
        raise ApiError(404, f"no live mapping with PIN {pin}")
    return JSONResponse({"pin": pin, "deleted": True})


@router.get("/numbers")
async def numbers(request: Request) -> JSONResponse:
    services = _services(request)
    languages = {
        "".join(c for c in e.number if c.isdigit()): e.language
        for e in services.config.numbers.entries
    }
    default_language = services.config.ivr.language
    return JSONResponse(
        {
            "numbers": [
                {
                    "e164": n.e164,
                    "country": n.country,
                    "formatted": n.formatted,
                    "toll_free": n.toll_free,
                    "default": n.default,
                    "tenants": list(n.tenants),
                    "language": languages.get("".join(c for c in n.e164 if c.isdigit()))
                    or default_language,
                }
                for n in services.numbers.numbers
            ]
        }
    )


# -- CDRs and status -----------------------------------------------------------------------------


@router.get("/cdrs")
async def cdrs(
    request: Request,
    direction: str | None = None,
    since: str | None = None,
    room: str | None = None,
    cause: str | None = None,
    outcome: str | None = None,
    limit: int = 50,
) -> JSONResponse:
    from dialbridge.ops.cdr import cdr_dict, find_cdrs, parse_since
    from dialbridge.store.cdr import CallRecords

    if direction not in (None, "in", "out"):
        raise ApiError(400, "direction: in or out")
    if outcome not in (None, "bridged", "failed"):
        raise ApiError(400, "outcome: bridged or failed")
    try:
        since_ts = parse_since(since)
    except ValueError as err:
        raise ApiError(400, f"since: {err}") from None
    engine = _engine(request)
    records = engine.cdrs if engine is not None else CallRecords(_services(request).db)
    rows = await find_cdrs(records, direction=direction, since=since_ts, room=room, cause=cause,
                           outcome=outcome, limit=max(1, min(limit, 1000)))  # fmt: skip
    return JSONResponse({"cdrs": [cdr_dict(r) for r in rows]})


@router.get("/status")
async def status(request: Request) -> JSONResponse:
    engine = _engine(request)
    return JSONResponse(
        {
            "version": __version__,
            "uptime": round(time.time() - STARTED, 1),
            "engine": engine is not None,
            "calls": len(engine.calls) if engine is not None else 0,
        }
    )
