"""HTTP services for Jitsi Meet: conference mapper, phone number list, dial-out authorization.

JSON everywhere; every error body is ``{"message": ..., "status": ...}`` because Meet rejects
with the parsed body and looks at its ``status`` (meet-services.md §2.2–§2.3).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from dialbridge import __version__
from dialbridge.app import Services
from dialbridge.web import admin, dialout, errors, health, mapper, metrics, numbers


def create_http_app(services: Services, *, call_engine: object | None = None) -> FastAPI:
    """The HTTP app; ``call_engine`` (a running CallEngine) feeds /metrics and the admin page."""
    app = FastAPI(
        title="dialbridge",
        version=__version__,
        description="Jitsi Meet dial-in/dial-out services (compatible with Jitsi's cloud-api.swagger).",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.services = services
    app.state.call_engine = call_engine
    if call_engine is not None:
        metrics.watch_media(call_engine)
    errors.install(app)
    metrics.install(app)
    for module in (mapper, numbers, dialout, health, metrics, admin):
        app.include_router(module.router)
    app.include_router(admin.page_router)
    origins = services.config.http.cors_origins
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    return app
