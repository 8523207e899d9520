"""HTTP services for Jitsi Meet: conference mapper, phone number list, dial-out authorization.

JSON everywhere; every error body is ``{"message": ..., "status": ...}`` because Meet rejects
with the parsed body and looks at its ``status`` (meet-services.md §2.2–§2.3).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from dialbridge import __version__
from dialbridge.app import Services
from dialbridge.web import dialout, errors, health, mapper, numbers


def create_http_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="dialbridge",
        version=__version__,
        description="Jitsi Meet dial-in/dial-out services (compatible with Jitsi's cloud-api.swagger).",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.services = services
    errors.install(app)
    for module in (mapper, numbers, dialout, health):
        app.include_router(module.router)
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
