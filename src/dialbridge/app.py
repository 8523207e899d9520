"""Wires the parts into one process: store, policies, the call engine (SIP user agent and
media engine) and the HTTP services, all on one event loop (uvloop under ``dialbridge serve``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from dialbridge.config import Config
from dialbridge.dialout_policy import DialOutPolicy
from dialbridge.phone_numbers import PhoneNumberList
from dialbridge.store.db import Database
from dialbridge.store.mappings import ConferenceMappings, MappingPolicy

log = logging.getLogger("dialbridge")

SWEEP_INTERVAL_SECONDS = 3600.0


@dataclass
class Services:
    config: Config
    db: Database
    mappings: ConferenceMappings
    dialout: DialOutPolicy
    numbers: PhoneNumberList
    #: The running :class:`~dialbridge.calls.engine.CallEngine` under ``serve`` (live calls,
    #: CDRs, metrics for the web views); None when only the HTTP services run.
    calls: Any = None


def mapping_policy(config: Config) -> MappingPolicy:
    m = config.mapper
    return MappingPolicy(
        pin_length=m.pin_length,
        expire_days=m.expire_days,
        quarantine_days=m.quarantine_days,
        refresh_interval_seconds=m.refresh_interval_seconds,
    )


@asynccontextmanager
async def open_services(
    config: Config, *, clock: Callable[[], float] = time.time, migrate: bool = True
) -> AsyncIterator[Services]:
    """Open the store (migrating it to the current schema) and build the shared objects."""
    db = Database(config.store.effective_url)
    try:
        if migrate:
            await db.migrate()
        yield Services(
            config=config,
            db=db,
            mappings=ConferenceMappings(db, mapping_policy(config), clock=clock),
            dialout=DialOutPolicy(config.dialout),
            numbers=PhoneNumberList(config.numbers),
        )
    finally:
        await db.close()


async def sweep_forever(services: Services, interval: float = SWEEP_INTERVAL_SECONDS) -> None:
    """Retire expired mappings, free quarantined PINs and forget old PIN failures now and then."""
    while True:
        try:
            retired, freed = await services.mappings.sweep()
            if retired or freed:
                log.info("mapping sweep: %d retired, %d PINs freed from quarantine", retired, freed)
            if services.calls is not None:
                await services.calls.pin_guard.sweep()
        except Exception:  # the store may be briefly unavailable; try again later
            log.exception("mapping sweep failed")
        await asyncio.sleep(interval)


def calls_configured(config: Config) -> bool:
    """SIP runs when something can call or be called: a Jigasi account or a trunk."""
    return bool(config.users or config.trunks)


async def serve(config: Config) -> None:
    """Run SIP, media and HTTP until cancelled. While no [[users]] or [[trunks]] are
    configured nothing could place or take a call: then only HTTP runs (port 5060 stays free)."""
    from contextlib import AsyncExitStack

    import uvicorn

    from dialbridge.calls.engine import open_call_engine
    from dialbridge.web import create_http_app

    async with open_services(config) as services, AsyncExitStack() as stack:
        if calls_configured(config):
            engine = await stack.enter_async_context(open_call_engine(config, services))
            services.calls = engine
            log.info("SIP listening on %s", engine.ua.local_addresses)
        else:
            log.info("no [[users]] or [[trunks]] configured: SIP and media stay off")
        server = uvicorn.Server(
            uvicorn.Config(
                create_http_app(services),
                host=config.http.host,
                port=config.http.port,
                log_level="info",
                access_log=False,
                lifespan="off",
            )
        )
        sweeper = asyncio.create_task(sweep_forever(services))
        try:
            await server.serve()
        finally:
            sweeper.cancel()
