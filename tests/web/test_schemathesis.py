"""Property-based run of our own OpenAPI: no input may produce a server error."""

from __future__ import annotations

import tempfile

import hypothesis
import schemathesis
from schemathesis.checks import not_a_server_error

from dialbridge.app import open_services
from dialbridge.config import load_config
from dialbridge.web import create_http_app

_tmp = tempfile.mkdtemp(prefix="dialbridge-schemathesis-")


def _build_app():  # noqa: ANN202
    """Open the services on a private loop (schemathesis calls the ASGI app synchronously)."""
    import asyncio

    config = load_config(
        None,
        store={"data_dir": _tmp},
        numbers={"entries": [{"number": "+49 30 1234567", "default": True}]},
        dialout={"allowed_countries": ["DE"]},
    )
    loop = asyncio.new_event_loop()
    cm = open_services(config)
    services = loop.run_until_complete(cm.__aenter__())
    return create_http_app(services)


APP = _build_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@hypothesis.settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
)
def test_no_server_errors(case) -> None:  # noqa: ANN001
    response = case.call()
    case.validate_response(response, checks=(not_a_server_error,))
    assert response.status_code < 500, response.text
    content_type = response.headers.get("content-type") or response.headers.get("Content-Type")
    assert content_type and content_type[0].startswith("application/json")
