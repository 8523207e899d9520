"""``/conferenceMapper`` — room JID ↔ PIN (cloud-api.swagger; meet-services.md §2.2, §2.3, §7).

* ``?conference=room@muc`` (``url`` accepted and ignored) → the mapping, created on first sight.
* ``?id=`` or ``?cid=`` (the reference IVR's name) → the reverse; unknown → 200 with
  ``conference: false`` so both Meet and IVRs can read it. ``conference`` wins when both are given.
* ``POST`` JSON ``{conference}``, ``{room, domain}`` or ``{id}``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, ConfigDict

from dialbridge.app import Services
from dialbridge.rooms import (
    Conference,
    InvalidConference,
    conference_from_parts,
    domain_allowed,
    parse_conference,
)
from dialbridge.web.errors import ApiError, error_responses

router = APIRouter(tags=["conferenceMapper"])

FOUND = "Successfully retrieved conference mapping"
NOT_FOUND = "No conference mapping was found"


class ConferenceMapperDetails(BaseModel):
    message: str
    id: int
    conference: str | bool  # the canonical JID, or false when a PIN is unknown


class ConferenceMapperRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    conference: str | None = None
    room: str | None = None
    domain: str | None = None
    id: int | str | None = None


def _services(request: Request) -> Services:
    return request.app.state.services


def _parse_pin(value: int | str) -> str:
    pin = "".join(str(value).split())  # "1366 5205 83" as printed in invitations
    if not pin.isdigit() or len(pin) > 20:
        raise ApiError(400, "id must be the digits of a PIN")
    return pin.lstrip("0") or "0"


async def _by_conference(services: Services, conference: Conference) -> ConferenceMapperDetails:
    cfg = services.config.mapper
    if not domain_allowed(conference.domain, cfg.allowed_domains, allow_tenants=cfg.allow_tenants):
        raise ApiError(403, f"domain {conference.domain} is not served here")
    mapping = await services.mappings.for_conference(conference.jid)
    return ConferenceMapperDetails(message=FOUND, id=mapping.id, conference=mapping.conference)


async def _by_pin(services: Services, pin: str) -> ConferenceMapperDetails:
    mapping = await services.mappings.for_pin(pin)
    if mapping is None:
        return ConferenceMapperDetails(message=NOT_FOUND, id=int(pin), conference=False)
    return ConferenceMapperDetails(message=FOUND, id=mapping.id, conference=mapping.conference)


def _conference(value: str) -> Conference:
    try:
        return parse_conference(value)
    except InvalidConference as err:
        raise ApiError(400, f"conference: {err}") from None


RESPONSES = error_responses(400, 403, 500)


@router.get("/conferenceMapper", response_model=ConferenceMapperDetails, responses=RESPONSES)
async def get_conference_mapper(
    request: Request,
    conference: Annotated[
        str | None, Query(description="room@conference.<domain>, as Meet sends it")
    ] = None,
    id: Annotated[str | None, Query(description="PIN to look up")] = None,  # noqa: A002
    cid: Annotated[
        str | None, Query(description="PIN to look up (name used by IVR scenarios)")
    ] = None,
    url: Annotated[str | None, Query(description="meeting URL (accepted, not used)")] = None,
) -> ConferenceMapperDetails:
    services = _services(request)
    if conference:
        return await _by_conference(services, _conference(conference))
    pin = id if id is not None else cid
    if pin is not None:
        return await _by_pin(services, _parse_pin(pin))
    raise ApiError(400, "give conference=room@muc, or id= (or cid=) with a PIN")


@router.post("/conferenceMapper", response_model=ConferenceMapperDetails, responses=RESPONSES)
async def post_conference_mapper(
    request: Request, body: Annotated[ConferenceMapperRequest, Body()]
) -> ConferenceMapperDetails:
    services = _services(request)
    if body.conference:
        return await _by_conference(services, _conference(body.conference))
    if body.room:
        domain = body.domain or next(iter(services.config.mapper.allowed_domains), None)
        if not domain:
            raise ApiError(400, "domain is required with room (no default MUC domain configured)")
        try:
            return await _by_conference(services, conference_from_parts(body.room, domain))
        except InvalidConference as err:
            raise ApiError(400, f"room/domain: {err}") from None
    if body.id is not None:
        return await _by_pin(services, _parse_pin(body.id))
    raise ApiError(400, "give conference, room and domain, or id")


class GoLiveRequest(BaseModel):
    conference: str | None = None


class GoLiveAnswer(BaseModel):
    message: str


@router.post(
    "/waiting-queue/golive",
    response_model=GoLiveAnswer,
    responses=error_responses(400, 404, 500),
    tags=["waitingQueueGoLive"],
)
async def go_live(request: Request, body: Annotated[GoLiveRequest, Body()]) -> GoLiveAnswer:
    """Part of cloud-api.swagger for completeness. dialbridge keeps no visitor queue: a known
    conference answers 200 (nobody is waiting to be told), an unknown one 404."""
    if not body.conference:
        raise ApiError(400, "conference is required")
    conference = _conference(body.conference)
    if await _services(request).mappings.show(conference.jid) is None:
        raise ApiError(404, "Missing conference")
    return GoLiveAnswer(message="no visitors are waiting")
