"""GET /openapi.json describes every route with the models the handlers validate with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from pydantic.json_schema import models_json_schema
from starlette.routing import Route

from tracker import web
from tracker.app import create_app
from tracker.ops import handlers, openapi
from tracker.sending import schemas
from tracker.settings import Settings


async def test_the_served_document_is_openapi_3_1_with_a_bearer_scheme(
    client: httpx.AsyncClient,
) -> None:
    """No key needed; the document served is the one built from the models."""
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document == openapi.document()
    assert document["openapi"] == "3.1.0"
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")


def test_every_route_of_the_app_is_documented(settings: Settings) -> None:
    """Each (path, method) the app serves has an operation, and nothing else does."""
    served = {
        (web.template(route.path), method.lower())
        for route in create_app(settings).routes
        if isinstance(route, Route) and route.include_in_schema  # not the dashboard's pages
        for method in route.methods or ()
        if method != "HEAD"
    }
    document = openapi.document()
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert served == documented


def test_operations_that_need_a_key_say_so_and_the_others_do_not() -> None:
    """Bearer security on /v1 routes except the callback; probes and metrics are open."""
    paths = openapi.document()["paths"]
    for path, item in paths.items():
        for method, operation in item.items():
            keyed = path.startswith("/v1/") and "callbacks" not in path
            assert (operation["security"] == [{"bearer": []}]) is keyed, (method, path)
            if keyed:
                assert {"401", "403"} <= set(operation["responses"])


def test_bodies_and_answers_are_the_pydantic_models_json_schemas() -> None:
    """Components are exactly the handlers' models' schemas, referenced where used."""
    document = openapi.document()
    pairs: list[tuple[Any, Any]] = [
        (schemas.SendRequest, "validation"),
        (schemas.MessageDetail, "serialization"),
        (handlers.StatsOut, "serialization"),
    ]
    _refs, expected = models_json_schema(pairs, ref_template=openapi.REF_TEMPLATE)
    for name, schema in expected["$defs"].items():
        assert document["components"]["schemas"][name] == schema
    send = document["paths"]["/v1/messages"]["post"]
    assert send["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SendRequest"
    }
    assert send["responses"]["202"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/MessageOut"
    }


def test_the_list_parameters_come_from_the_query_model() -> None:
    """Every ListParams field is a query parameter; status repeats as an array."""
    operation = openapi.document()["paths"]["/v1/messages"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert set(parameters) == set(handlers.ListParams.model_fields)
    assert parameters["status"]["schema"]["type"] == "array"
    assert parameters["limit"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 500,
        "default": 50,
    }
    assert all(p["in"] == "query" and not p["required"] for p in parameters.values())


async def test_get_and_post_share_the_messages_route_and_others_get_405(
    client: httpx.AsyncClient, make_key: Callable[..., Any]
) -> None:
    """GET lists, POST queues; DELETE is 405 naming both methods."""
    headers = {"Authorization": f"Bearer {await make_key('app', 'send,read')}"}
    sent = await client.post(
        "/v1/messages", json={"to": "0712345678", "message": "hi"}, headers=headers
    )
    assert sent.status_code == 202, sent.text
    listed = await client.get("/v1/messages", headers=headers)
    assert [m["id"] for m in listed.json()["messages"]] == [sent.json()["id"]]
    refused = await client.delete("/v1/messages", headers=headers)
    assert refused.status_code == 405
    assert {"GET", "POST"} <= {m.strip() for m in refused.headers["allow"].split(",")}
