"""Our answers validate against the schemas of Jitsi's cloud-api.swagger, operation by operation."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.web.conftest import MUC

SWAGGER = yaml.safe_load((Path(__file__).parent / "data" / "cloud-api.swagger").read_text())


def schema_of(path: str, method: str, status: int = 200) -> dict:
    response = SWAGGER["paths"][path][method]["responses"]
    response = response.get(status, response.get(str(status)))
    schema = dict(response.get("schema", {}))
    schema["definitions"] = SWAGGER["definitions"]
    return schema


def validate(instance, schema) -> None:  # noqa: ANN001
    jsonschema.Draft4Validator(schema).validate(instance)


def test_every_swagger_operation_is_covered() -> None:
    operations = {(p, m) for p, ops in SWAGGER["paths"].items() for m in ops}
    assert operations == {
        ("/conferenceMapper", "get"),
        ("/conferenceMapper", "post"),
        ("/phoneNumberList", "get"),
        ("/waiting-queue/golive", "post"),
    }


async def test_get_conference_mapper_validates(client) -> None:
    schema = schema_of("/conferenceMapper", "get")
    created = (await client.get("/conferenceMapper", params={"conference": f"Room@{MUC}"})).json()
    validate(created, schema)
    validate((await client.get("/conferenceMapper", params={"id": created["id"]})).json(), schema)


async def test_post_conference_mapper_validates(client) -> None:
    schema = schema_of("/conferenceMapper", "post")
    request_schema = {
        "$ref": "#/definitions/ConferenceMapperRequest",
        "definitions": SWAGGER["definitions"],
    }
    for body in ({"conference": f"Room@{MUC}"}, {"room": "Room", "domain": MUC}):
        validate(body, request_schema)
        validate((await client.post("/conferenceMapper", json=body)).json(), schema)
    created = (await client.post("/conferenceMapper", json={"conference": f"Room@{MUC}"})).json()
    validate({"id": created["id"]}, request_schema)
    validate((await client.post("/conferenceMapper", json={"id": created["id"]})).json(), schema)


async def test_unknown_pin_differs_only_where_the_swagger_text_allows(client) -> None:
    """The schema types ``conference`` as string, but its description says "OR boolean false if no
    conference was found" — which is what Meet and IVRs test for (§2.3). Everything else validates."""
    body = (await client.get("/conferenceMapper", params={"id": "1234567890"})).json()
    assert body["conference"] is False
    description = SWAGGER["definitions"]["ConferenceMapperDetails"]["properties"]["conference"][
        "description"
    ]
    assert "boolean false" in description
    validate({**body, "conference": "placeholder"}, schema_of("/conferenceMapper", "get"))


async def test_phone_number_list_validates(client) -> None:
    body = (await client.get("/phoneNumberList")).json()
    assert len(body) == 2
    validate(body, schema_of("/phoneNumberList", "get"))
    validate(
        (await client.get("/phoneNumberList", params={"conference": f"r@{MUC}"})).json(),
        schema_of("/phoneNumberList", "get"),
    )


@pytest.mark.parametrize("known", [True, False])
async def test_golive_answers_a_documented_status(client, known) -> None:
    request_schema = {"$ref": "#/definitions/GoLiveRequest", "definitions": SWAGGER["definitions"]}
    body = {"conference": f"queue@{MUC}"}
    validate(body, request_schema)
    if known:
        await client.get("/conferenceMapper", params=body)
    r = await client.post("/waiting-queue/golive", json=body)
    documented = {
        int(code) for code in SWAGGER["paths"]["/waiting-queue/golive"]["post"]["responses"]
    }
    assert r.status_code in documented
    assert r.status_code == (200 if known else 404)
