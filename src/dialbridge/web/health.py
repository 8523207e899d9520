"""``/healthz``: 200 when the store answers, 503 otherwise."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from dialbridge.app import Services
from dialbridge.web.errors import error_response, error_responses

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    store: str


@router.get("/healthz", response_model=Health, responses=error_responses(503))
async def healthz(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    try:
        await services.db.ping()
    except Exception as err:  # any store failure is "unhealthy", with the reason
        return error_response(503, f"store unavailable: {type(err).__name__}")
    return JSONResponse({"status": "ok", "store": "ok"})
