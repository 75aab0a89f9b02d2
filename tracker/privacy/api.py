"""``/v1/opt-outs``: numbers that must not be messaged.

``POST`` (``send`` scope) opts a number out for the key's own client; an admin
key may name a client, or name none for every client. Whatever is still queued
to the number is cancelled in the same transaction. ``GET`` (``read``) lists the
opt-outs binding the key's client (``?to=`` checks one number); ``DELETE``
removes one. Numbers are kept only as keyed hashes, so no answer can show one.

``POST /v1/erasures`` (``admin``) erases one number everywhere (``erasure``) and
answers with the counts; ``GET /v1/audit-events`` (``admin``) lists the audit log.
"""

from __future__ import annotations

import uuid
from http import HTTPStatus
from typing import Any

import pydantic_core
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tracker import auth, errors, logs, web
from tracker.clients import records
from tracker.domain import recipients
from tracker.privacy import audit, erasure, optouts, pseudonyms
from tracker.services import services_of

log = logs.get_logger(__name__)
COLLECTION = "/v1/opt-outs"
ONE = "/v1/opt-outs/{id:uuid}"
FIELDS = frozenset({"to", "client"})
ERASURES = "/v1/erasures"
AUDIT_EVENTS = "/v1/audit-events"
AUDIT_LIMIT = 100
AUDIT_FIELDS = ("id", "action", "actor", "message_id", "detail", "created_at")


async def add_opt_out(request: Request) -> Response:
    """``POST /v1/opt-outs``: 201 with the opt-out (200 if it was there) and the cancelled count."""
    services = services_of(request)
    principal = await auth.require(request, services.database, auth.Scope.SEND)
    data = await web.read_json_object(request, services.settings.max_body_bytes)
    msisdn, client = _parse(data, principal)
    key = services.settings.pseudonym_key_bytes()
    async with services.database.write() as session:
        if client is not None and await records.get(session, client) is None:
            raise errors.ValidationFailed({"client": [f"no client named {errors.echo(client)}"]})
        added = await optouts.add(session, msisdn, client, principal.client, key)
    if added.cancelled:
        services.webhook_doorbell.ring()  # message.cancelled deliveries were queued
    log.info(
        "opt_out_added",
        opt_out_id=str(added.opt_out.id),
        scope=client or "all clients",
        created=added.created,
        cancelled=added.cancelled,
    )
    body = {**_out(added.opt_out), "cancelled": added.cancelled}
    return _json(HTTPStatus.CREATED if added.created else HTTPStatus.OK, body)


async def list_opt_outs(request: Request) -> Response:
    """``GET /v1/opt-outs[?to=N]``: those binding the key's client (admin: all), newest first."""
    services = services_of(request)
    async with services.database.read() as session:
        principal = await auth.require(request, services.database, auth.Scope.READ, session=session)
        raw = _query_to(request)
        pseudonym = None
        if raw is not None:
            pseudonym = pseudonyms.of(_msisdn(raw), services.settings.pseudonym_key_bytes())
        found = await optouts.list_for(session, _only_own(principal), pseudonym)
    return _json(HTTPStatus.OK, {"opt_outs": [_out(opt_out) for opt_out in found]})


async def remove_opt_out(request: Request) -> Response:
    """``DELETE /v1/opt-outs/{id}``: 204; a key removes only its client's own (admin: any)."""
    services = services_of(request)
    principal = await auth.require(request, services.database, auth.Scope.SEND)
    opt_out_id: uuid.UUID = request.path_params["id"]
    async with services.database.write() as session:
        removed = await optouts.remove(session, opt_out_id, _only_own(principal))
    if not removed:
        raise errors.NotFound("opt-out not found")
    log.info("opt_out_removed", opt_out_id=str(opt_out_id))
    return Response(status_code=HTTPStatus.NO_CONTENT)


async def erase(request: Request) -> Response:
    """``POST /v1/erasures`` ``{"to": ...}``: 200 with the rows changed, per table."""
    services = services_of(request)
    principal = await auth.require(request, services.database, auth.Scope.ADMIN)
    data = await web.read_json_object(request, services.settings.max_body_bytes)
    unknown = {name: ["is not a field of an erasure (the field is to)"] for name in data}
    unknown.pop("to", None)
    if unknown:
        raise errors.ValidationFailed(unknown)
    to = data.get("to")
    if not isinstance(to, str):
        raise errors.ValidationFailed({"to": ["is required: the phone number, e.g. 0712 345 678"]})
    actor = audit.actor_of(principal.client, principal.key_name or principal.key_id)
    erased = await erasure.erase(
        services.database, _msisdn(to), services.settings.pseudonym_key_bytes(), actor
    )
    if erased.messages_cancelled:
        services.webhook_doorbell.ring()  # message.cancelled deliveries were queued
    log.info("erasure_done", actor=actor, **erased.counts())
    return _json(HTTPStatus.OK, erased.counts())


async def audit_events(request: Request) -> Response:
    """``GET /v1/audit-events[?action=erasure]``: the newest entries first (at most 100)."""
    services = services_of(request)
    async with services.database.read() as session:
        await auth.require(request, services.database, auth.Scope.ADMIN, session=session)
        action = _query_action(request)
        found = await audit.recent(session, action=action, limit=AUDIT_LIMIT)
    events = [{name: row[name] for name in AUDIT_FIELDS} for row in found]
    return _json(HTTPStatus.OK, {"audit_events": events})


def _query_action(request: Request) -> audit.Action | None:
    """The one query parameter, ``action``, if given."""
    problems = {name: ["unknown parameter"] for name in request.query_params if name != "action"}
    given = request.query_params.getlist("action")
    if len(given) > 1:
        problems["action"] = ["must be given once"]
    elif given and given[0] not in set(audit.Action):
        problems["action"] = [f"must be one of {', '.join(a.value for a in audit.Action)}"]
    if problems:
        raise errors.ValidationFailed(problems)
    return audit.Action(given[0]) if given else None


def _parse(data: dict[str, Any], principal: auth.Principal) -> tuple[str, str | None]:
    """The number and the scope (a client, or None for all) of a POST body."""
    problems: dict[str, list[str]] = {}
    for unknown in sorted(set(data) - FIELDS):
        problems[unknown] = ["is not a field of an opt-out (the fields are to and client)"]
    to, client = data.get("to"), data.get("client", principal.client)
    msisdn = None
    if not isinstance(to, str):
        problems["to"] = ["is required: the phone number, e.g. 0712 345 678"]
    else:
        try:
            msisdn = recipients.normalise_recipient(to).msisdn
        except errors.InvalidRecipient as exc:
            problems["to"] = [str(exc)]
    if client is not None and not isinstance(client, str):
        problems["client"] = ["must be a client's name, or null for every client (admin keys)"]
    elif client != principal.client and not principal.allows(auth.Scope.ADMIN):
        problems["client"] = ["only an admin key may opt a number out for another client or all"]
    if problems or msisdn is None:
        raise errors.ValidationFailed(problems)
    return msisdn, client


def _query_to(request: Request) -> str | None:
    """The one query parameter, ``to``; any other, or ``to`` twice, is a 400."""
    problems = {name: ["unknown parameter"] for name in request.query_params if name != "to"}
    given = request.query_params.getlist("to")
    if len(given) > 1:
        problems["to"] = ["must be given once"]
    if problems:
        raise errors.ValidationFailed(problems)
    return given[0] if given else None


def _msisdn(raw: str) -> str:
    try:
        return recipients.normalise_recipient(raw).msisdn
    except errors.InvalidRecipient as exc:
        raise errors.ValidationFailed({"to": [str(exc)]}) from None


def _only_own(principal: auth.Principal) -> str | None:
    return None if principal.allows(auth.Scope.ADMIN) else principal.client


def _out(opt_out: optouts.OptOut) -> dict[str, Any]:
    return {
        "id": opt_out.id,
        "client": opt_out.client,
        "created_by": opt_out.created_by,
        "created_at": opt_out.created_at,
    }


def _json(status_code: HTTPStatus, body: object) -> Response:
    return Response(pydantic_core.to_json(body), status_code, media_type=web.JSON_MEDIA_TYPE)


async def _collection(request: Request) -> Response:
    """``/v1/opt-outs``: one route for GET and POST, so another method is a 405."""
    if request.method == "POST":
        return await add_opt_out(request)
    return await list_opt_outs(request)


routes = [
    Route(COLLECTION, _collection, methods=["GET", "POST"]),
    Route(ONE, remove_opt_out, methods=["DELETE"]),
    Route(ERASURES, erase, methods=["POST"]),
    Route(AUDIT_EVENTS, audit_events, methods=["GET"]),
]
