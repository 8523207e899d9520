"""``/phoneNumberList`` — the dial-in numbers Meet shows (meet-services.md §2.4)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from dialbridge.app import Services
from dialbridge.rooms import InvalidConference, parse_conference, tenant_of
from dialbridge.web.errors import ApiError, error_responses

router = APIRouter(tags=["phoneNumberList"])


class PhoneNumberListAnswer(BaseModel):
    countryCode: str  # noqa: N815 - Meet's field name
    formattedNumber: str  # noqa: N815
    tollFree: bool  # noqa: N815
    default: bool | None = None


class LegacyPhoneNumberList(BaseModel):
    message: str
    numbers: dict[str, list[str]]
    numbersEnabled: bool  # noqa: N815


@router.get(
    "/phoneNumberList",
    response_model=list[PhoneNumberListAnswer] | LegacyPhoneNumberList,
    response_model_exclude_none=True,
    responses=error_responses(400, 500),
)
async def phone_number_list(
    request: Request,
    conference: Annotated[
        str | None, Query(description="room@muc; picks a tenant's own list")
    ] = None,
    format: Annotated[Literal["array", "legacy"] | None, Query(description="answer format")] = None,  # noqa: A002
) -> JSONResponse:
    services: Services = request.app.state.services
    tenant = None
    if conference:
        try:
            domain = parse_conference(conference).domain
        except InvalidConference as err:
            raise ApiError(400, f"conference: {err}") from None
        tenant = tenant_of(domain, services.config.mapper.allowed_domains)
    if (format or services.config.numbers.format) == "legacy":
        return JSONResponse(services.numbers.as_legacy(tenant))
    return JSONResponse(services.numbers.as_array(tenant))
