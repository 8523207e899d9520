from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from dialbridge.web import create_http_app

MUC = "conference.meet.example.com"


@pytest.fixture
async def make_client(services_factory) -> AsyncIterator[Callable]:
    """``await make_client(**config_sections)`` → an httpx client talking to our ASGI app."""
    clients: list[httpx.AsyncClient] = []

    async def make(**sections) -> httpx.AsyncClient:  # noqa: ANN003
        services = await services_factory(**sections)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_http_app(services)), base_url="http://test"
        )
        client.services = services  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def client(make_client) -> httpx.AsyncClient:
    return await make_client(
        numbers={
            "entries": [
                {"number": "+49 30 1234567", "default": True},
                {"number": "+1 202 555 0143"},
            ]
        },
        dialout={"allowed_countries": ["DE", "US"]},
    )
