"""Dial-out authorization for Meet's invite dialog (meet-services.md §3.2).

``GET /authorizephone?phone=<digits>[&region=]`` → ``{allow, country, phone}``, and the region
check ``POST /outboundDestination`` ``{appId, phoneNumber}`` → ``{allowed}``. Both ask the same
:class:`~dialbridge.dialout_policy.DialOutPolicy` the SIP dial-out path enforces.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, ConfigDict

from dialbridge.app import Services
from dialbridge.web.errors import ApiError, error_responses

router = APIRouter(tags=["dialOut"])


class AuthorizePhoneAnswer(BaseModel):
    allow: bool
    country: str
    phone: str


class OutboundDestinationRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    appId: str | None = None  # noqa: N815 - Meet's field name
    phoneNumber: str  # noqa: N815


class OutboundDestinationAnswer(BaseModel):
    allowed: bool


MAX_PHONE_LENGTH = 64


@router.get(
    "/authorizephone", response_model=AuthorizePhoneAnswer, responses=error_responses(400, 500)
)
async def authorize_phone(
    request: Request,
    phone: Annotated[str, Query(description="the number as Meet sends it: digits only")],
    region: Annotated[str | None, Query(description="Meet's deploymentInfo.region")] = None,
) -> AuthorizePhoneAnswer:
    if not phone.strip() or len(phone) > MAX_PHONE_LENGTH:
        raise ApiError(400, "phone must be a phone number")
    services: Services = request.app.state.services
    decision = services.dialout.check(phone, region)
    return AuthorizePhoneAnswer(
        allow=decision.allow, country=decision.country, phone=decision.phone
    )


@router.post(
    "/outboundDestination",
    response_model=OutboundDestinationAnswer,
    responses=error_responses(400, 500),
)
async def outbound_destination(
    request: Request, body: Annotated[OutboundDestinationRequest, Body()]
) -> OutboundDestinationAnswer:
    if len(body.phoneNumber) > MAX_PHONE_LENGTH:
        raise ApiError(400, "phoneNumber is too long")
    services: Services = request.app.state.services
    return OutboundDestinationAnswer(allowed=services.dialout.check(body.phoneNumber).allow)
