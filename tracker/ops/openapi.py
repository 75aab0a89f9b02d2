"""The OpenAPI 3.1 document, built from the pydantic models the handlers use.

Each operation names its models: the request body (``schemas.SendRequest``...),
the query string (``handlers.ListParams``...) and one model per answer. Their JSON
schemas become ``components.schemas``; a query model's fields become query
parameters. Routes without a pydantic model of their own (probes, the
callback) are described by the small models below, which tests hold to the
real answers.
"""

# Over 400 lines, on purpose: one table of every operation, read top to bottom.

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import tracker
from tracker import auth, web
from tracker.clients import schemas as client_schemas
from tracker.ops import admin, handlers
from tracker.privacy import api as privacy_api
from tracker.privacy import schemas as privacy_schemas
from tracker.reports import capability, reading
from tracker.sending import api, idempotency, schemas
from tracker.webhooks import api as webhooks_api
from tracker.webhooks import schemas as hooks

OPENAPI_VERSION = "3.1.0"
REF_TEMPLATE = "#/components/schemas/{model}"
SECURITY_SCHEME = "bearer"
TEXT: Literal["text"] = "text"  # an answer in plain text, not JSON
EMPTY: Literal["empty"] = "empty"  # an answer with no body (204)
_PATH_PARAMETER = re.compile(r"{([A-Za-z_]+)}")


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    schema_: str | None = Field(default=None, alias="schema", description="When ready")
    reason: str | None = Field(default=None, description="When unavailable")


class WhoAmI(BaseModel):
    client: str
    scopes: list[auth.Scope]


class CallbackReport(BaseModel):
    """What KIMISMS posts; other fields are kept with the raw body."""

    model_config = ConfigDict(extra="allow")

    status: str = Field(min_length=1, max_length=reading.MAX_STATUS_LENGTH, examples=["Delivered"])
    message_id: str | None = Field(default=None, description="The provider's message id")
    contact: str | None = None
    description: str | None = Field(default=None, max_length=reading.MAX_DESCRIPTION_LENGTH)


class CallbackAck(BaseModel):
    received: Literal[True]
    outcome: str = Field(description="applied, interim, stale, duplicate, spooled, ...")


Answer = type[BaseModel] | Literal["text", "empty"]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    responses: Mapping[int, tuple[str, Answer]]
    scope: auth.Scope | None = None  # None: no API key
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    headers: list[dict[str, Any]] = field(default_factory=list)


def _keyed(scope: auth.Scope, responses: Mapping[int, tuple[str, Answer]]) -> dict[int, Any]:
    return {
        **responses,
        401: ("A missing or bad API key", schemas.ErrorDetail),
        403: (f"The key lacks the {scope.value!r} scope", schemas.ErrorDetail),
        503: ("Database unavailable: retry after Retry-After seconds", schemas.ErrorDetail),
    }


INVALID = ("Invalid input, by field", schemas.ValidationErrors)
NOT_FOUND = ("No such message (or not the caller's)", schemas.ErrorDetail)
TOO_LARGE = ("Body too large", schemas.ErrorDetail)
NOT_JSON = ("A Content-Type other than JSON", schemas.ErrorDetail)
KEY_REUSED = ("Idempotency-Key reused for another body", schemas.ErrorDetail)
OVER_QUOTA = (
    "Past a limit of the client, named; nothing stored; see Retry-After",
    schemas.ErrorDetail,
)
IDEMPOTENCY_HEADER = {
    "name": idempotency.HEADER,
    "in": "header",
    "required": False,
    "description": "A replay gets the first answer; another body under the same key is 409",
    "schema": {"type": "string", "pattern": rf"^[ -~]{{1,{idempotency.MAX_KEY_CHARS}}}$"},
}
SEND, READ, ADMIN = auth.Scope.SEND, auth.Scope.READ, auth.Scope.ADMIN
MESSAGE = "/v1/messages/{id}"
NO_CLIENT = ("No client of that name", schemas.ErrorDetail)
NO_ENDPOINT = ("No such endpoint or delivery (or not the caller's)", schemas.ErrorDetail)
DISABLED = ("The endpoint is disabled: enable it first", schemas.ErrorDetail)


def _hook(
    method: str,
    path: str,
    summary: str,
    scope: auth.Scope,
    answers: Mapping[int, tuple[str, Answer]],
    *,
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
) -> Operation:
    """A webhooks operation: keyed, and 404 wherever the path names an id."""
    responses = {**answers, 404: NO_ENDPOINT} if "{" in path else dict(answers)
    return Operation(
        method, web.template(path), summary, "webhooks", _keyed(scope, responses),
        scope=scope, query=query, body=body,
    )  # fmt: skip


OPERATIONS = (
    Operation(
        "post", api.SEND_ROUTE, "Queue one message", "messages",
        _keyed(SEND, {202: ("Queued", schemas.MessageOut), 400: INVALID,
                      409: KEY_REUSED,
                      413: TOO_LARGE, 415: NOT_JSON, 429: OVER_QUOTA}),
        scope=SEND, body=schemas.SendRequest, headers=[IDEMPOTENCY_HEADER],
    ),
    Operation(
        "get", api.SEND_ROUTE, "List messages, newest first", "messages",
        _keyed(READ, {200: ("One page", handlers.MessageList), 400: INVALID}),
        scope=READ, query=handlers.ListParams,
    ),
    Operation(
        "post", api.BATCH_ROUTE, "Queue a batch: all or none", "messages",
        _keyed(SEND, {202: ("Queued", schemas.BatchAccepted), 400: INVALID,
                      409: KEY_REUSED,
                      413: TOO_LARGE, 415: NOT_JSON, 429: OVER_QUOTA}),
        scope=SEND, body=schemas.BatchRequest, headers=[IDEMPOTENCY_HEADER],
    ),
    Operation(
        "get", MESSAGE, "One message and its timeline", "messages",
        _keyed(READ, {200: ("The message", schemas.MessageDetail), 400: INVALID,
                      404: NOT_FOUND}),
        scope=READ, query=schemas.MessageQuery,
    ),
    Operation(
        "post", MESSAGE + "/cancel", "Cancel a message still queued", "messages",
        _keyed(SEND, {200: ("Cancelled (now or before)", schemas.MessageOut), 404: NOT_FOUND,
                      409: ("Past queued, and not cancelled", schemas.ErrorDetail)}),
        scope=SEND,
    ),
    Operation(
        "get", "/v1/stats", "Statistics over a window", "operations",
        _keyed(READ, {200: ("Statistics", handlers.StatsOut), 400: INVALID}),
        scope=READ, query=handlers.StatsParams,
    ),
    Operation(
        "get", admin.COLLECTION, "Every client and its settings", "clients",
        _keyed(ADMIN, {200: ("The clients, by name", client_schemas.ClientList)}), scope=ADMIN,
    ),
    Operation(
        "post", admin.COLLECTION, "Add a client (an internal app)", "clients",
        _keyed(ADMIN, {201: ("Created", client_schemas.ClientOut), 400: INVALID,
                       409: ("A client of that name exists", schemas.ErrorDetail),
                       413: TOO_LARGE, 415: NOT_JSON}),
        scope=ADMIN, body=client_schemas.NewClient,
    ),
    Operation(
        "get", admin.ONE, "One client, its settings and its keys", "clients",
        _keyed(ADMIN, {200: ("The client", client_schemas.ClientDetail), 404: NO_CLIENT}),
        scope=ADMIN,
    ),
    Operation(
        "patch", admin.ONE, "Change a client's settings (null clears a limit or override)",
        "clients",
        _keyed(ADMIN, {200: ("The client as changed", client_schemas.ClientOut), 400: INVALID,
                       404: NO_CLIENT, 413: TOO_LARGE, 415: NOT_JSON}),
        scope=ADMIN, body=client_schemas.ClientChanges,
    ),
    Operation(
        "post", privacy_api.COLLECTION, "Opt a number out; cancels what is queued to it",
        "privacy",
        _keyed(SEND, {201: ("Added", privacy_schemas.OptOutAdded),
                      200: ("It was there already", privacy_schemas.OptOutAdded),
                      400: INVALID, 413: TOO_LARGE, 415: NOT_JSON}),
        scope=SEND, body=privacy_schemas.OptOutRequest,
    ),
    Operation(
        "get", privacy_api.COLLECTION, "The opt-outs that bind the key's client", "privacy",
        _keyed(READ, {200: ("Newest first", privacy_schemas.OptOutList), 400: INVALID}),
        scope=READ, query=privacy_schemas.OptOutQuery,
    ),
    Operation(
        "delete", "/v1/opt-outs/{id}", "Lift an opt-out", "privacy",
        _keyed(SEND, {204: ("Removed", EMPTY), 404: NOT_FOUND}), scope=SEND,
    ),
    Operation(
        "post", privacy_api.ERASURES, "Erase a number everywhere: bodies and number", "privacy",
        _keyed(ADMIN, {200: ("The rows changed, per table", privacy_schemas.ErasureOut),
                       400: INVALID, 413: TOO_LARGE, 415: NOT_JSON}),
        scope=ADMIN, body=privacy_schemas.ErasureRequest,
    ),
    Operation(
        "get", privacy_api.AUDIT_EVENTS, "The audit log of personal data, newest first",
        "privacy",
        _keyed(ADMIN, {200: ("The newest 100", privacy_schemas.AuditEventList), 400: INVALID}),
        scope=ADMIN, query=privacy_schemas.AuditQuery,
    ),
    Operation(
        "get", "/v1/whoami", "The calling key's client and scopes", "operations",
        _keyed(READ, {200: ("The key", WhoAmI)}), scope=READ,
    ),
    Operation(
        "post", capability.PATH_TEMPLATE, "KIMISMS delivery report (the URL is the credential)",
        "callbacks",
        {200: ("Stored", CallbackAck), 400: ("Not a delivery report", schemas.ErrorDetail),
         404: ("Unknown message or bad token", schemas.ErrorDetail),
         409: ("Contradicts the message", schemas.ErrorDetail), 413: TOO_LARGE,
         503: ("Could not store it", schemas.ErrorDetail)},
        body=CallbackReport,
    ),
    _hook("get", webhooks_api.COLLECTION, "The key's client's endpoints (admin: any)", READ,
          {200: ("The endpoints", hooks.EndpointList), 400: INVALID}, query=hooks.ListParams),
    _hook("post", webhooks_api.COLLECTION, "Add an endpoint; its secret is shown only now", SEND,
          {201: ("Created, with its secret", hooks.EndpointWithSecret), 400: INVALID,
           413: TOO_LARGE, 415: NOT_JSON}, body=hooks.NewEndpoint),
    _hook("get", webhooks_api.ONE, "One endpoint, its backlog and last attempt", READ,
          {200: ("The endpoint", hooks.EndpointDetail)}),
    _hook("patch", webhooks_api.ONE, "Change an endpoint; enabled false stops it", SEND,
          {200: ("The endpoint as changed", hooks.EndpointOut), 400: INVALID,
           413: TOO_LARGE, 415: NOT_JSON}, body=hooks.EndpointChanges),
    _hook("delete", webhooks_api.ONE, "Remove an endpoint and its deliveries", SEND,
          {204: ("Deleted", EMPTY)}),
    _hook("post", webhooks_api.ROTATE, "A new secret; the old one signs for a grace", SEND,
          {200: ("The endpoint and its new secret", hooks.EndpointWithSecret)}),
    _hook("get", webhooks_api.DELIVERIES, "Deliveries with their attempts, newest first", READ,
          {200: ("One page", hooks.DeliveryPage), 400: INVALID}, query=hooks.DeliveriesParams),
    _hook("post", webhooks_api.RECOVER, "Send again every failed delivery since a time", SEND,
          {200: ("How many", hooks.Recovered), 400: INVALID, 409: DISABLED},
          query=hooks.RecoverParams),
    _hook("post", webhooks_api.TEST, "Queue a webhook.test event", SEND,
          {202: ("Queued", hooks.DeliveryOut), 409: DISABLED}),
    _hook("post", webhooks_api.RETRY, "Send a delivery again, its schedule restarted", SEND,
          {200: ("Pending again", hooks.DeliveryOut),
           409: ("Still pending, or its endpoint is disabled", schemas.ErrorDetail)}),
    Operation("get", "/healthz", "Alive", "probes", {200: ("Alive", Health)}),
    Operation(
        "get", "/readyz", "Database reachable and schema current", "probes",
        {200: ("Ready", Readiness), 503: ("Not ready, with a reason", Readiness)},
    ),
    Operation(
        "get", "/metrics", "Prometheus metrics (keep on the internal network)", "probes",
        {200: ("Prometheus text format", TEXT)},
    ),
    Operation("get", "/openapi.json", "This document", "probes", {200: ("OpenAPI 3.1", TEXT)}),
)  # fmt: skip


def _models(operations: tuple[Operation, ...]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    found: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
    for op in operations:
        for model in (op.query, op.body):
            if model is not None:
                found[model, "validation"] = None
        for _description, answer in op.responses.values():
            if answer not in {TEXT, EMPTY}:
                assert not isinstance(answer, str)  # noqa: S101 - narrowing for mypy
                found[answer, "serialization"] = None
    return list(found)


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [X, null]`` -> X: an absent query parameter is the null."""
    result = {k: v for k, v in schema.items() if k not in {"anyOf", "default", "title"}}
    options = [o for o in schema.get("anyOf", []) if o != {"type": "null"}]
    if len(options) == 1:
        result.update(options[0])
    elif options:
        result["anyOf"] = options
    if schema.get("default") is not None:
        result["default"] = schema["default"]
    return result


def _query_parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", []))
    parameters = []
    for name, prop in schema["properties"].items():
        described = _without_null(prop)
        description = described.pop("description", None)
        parameter = {"name": name, "in": "query", "required": name in required}
        if description:
            parameter["description"] = description
        parameters.append({**parameter, "schema": described})
    return parameters


def _path_parameters(path: str) -> list[dict[str, Any]]:
    kinds = {"id": {"type": "string", "format": "uuid"}, "delivery_id": {"type": "integer"}}
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": kinds.get(name, {"type": "string"}),
        }
        for name in _PATH_PARAMETER.findall(path)
    ]


def _content(answer: Answer, ref: dict[str, Any] | None) -> dict[str, Any]:
    if answer == TEXT or ref is None:
        return {"text/plain": {"schema": {"type": "string"}}}
    return {"application/json": {"schema": ref}}


def _operation(
    op: Operation, refs: Mapping[Any, dict[str, Any]], components: dict[str, Any]
) -> Any:
    spec: dict[str, Any] = {"summary": op.summary, "tags": [op.tag], "operationId": _op_id(op)}
    parameters = _path_parameters(op.path) + list(op.headers)
    if op.query is not None:
        name = refs[op.query, "validation"]["$ref"].rsplit("/", 1)[-1]
        parameters += _query_parameters(components.pop(name))
    if parameters:
        spec["parameters"] = parameters
    if op.body is not None:
        body_ref = refs[op.body, "validation"]
        spec["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body_ref}},
        }
    spec["responses"] = {
        str(code): {"description": description}
        if answer == EMPTY
        else {
            "description": description,
            "content": _content(answer, None if answer == TEXT else refs[answer, "serialization"]),
        }
        for code, (description, answer) in sorted(op.responses.items())
    }
    if op.path == "/openapi.json":
        spec["responses"]["200"]["content"] = {"application/json": {"schema": {"type": "object"}}}
    spec["security"] = [{SECURITY_SCHEME: []}] if op.scope else []
    if op.scope:
        alternative = "" if op.scope == auth.Scope.ADMIN else " (or `admin`)"
        spec["description"] = f"Needs an API key with the `{op.scope.value}` scope{alternative}."
    return spec


def _op_id(op: Operation) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", op.path).strip("_")
    return f"{op.method}_{words}"


def document(operations: tuple[Operation, ...] = OPERATIONS) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    refs, definitions = models_json_schema(_models(operations), ref_template=REF_TEMPLATE)
    components: dict[str, Any] = dict(definitions.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method] = _operation(op, refs, components)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "kimisms-tracker",
            "version": tracker.__version__,
            "description": "Send SMS through KIMISMS and track each to its final delivery status.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key from `tracker keys create` (kt_...)",
                }
            },
        },
    }


@functools.cache
def _cached_document() -> dict[str, Any]:
    return document()


async def openapi_json(_request: Request) -> JSONResponse:
    """``GET /openapi.json``: every route, with the request and response models."""
    return JSONResponse(_cached_document())


routes = [Route("/openapi.json", openapi_json, methods=["GET"])]
