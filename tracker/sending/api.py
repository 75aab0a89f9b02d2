"""The internal API for sending: one message, a batch, one message's history, cancel.

A message is stored as ``queued`` (with its first event) before the 202
answer, in one transaction per request; a batch is all accepted or all
refused. Bodies are checked in two steps: ``schemas`` for shapes and types,
``intake`` for the rules. An ``Idempotency-Key`` replay is answered before the
rules run, so a retry gets the first answer even after a ``send_at`` passed.
A client with limits is counted in the storing transaction (``clients.quotas``):
past a limit the request is answered 429 with Retry-After, and nothing is stored.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Any

import pydantic_core
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tracker import auth, clock, errors, logs, metrics, wakeup, web
from tracker.clients import quotas
from tracker.domain import headers
from tracker.privacy import audit, optouts
from tracker.sending import idempotency, intake, schemas, store
from tracker.services import Services, services_of

log = logs.get_logger(__name__)
SEND_ROUTE = "/v1/messages"
BATCH_ROUTE = "/v1/messages/batch"
JSON_MEDIA_TYPE = "application/json"
REPLAYED_HEADER = headers.IDEMPOTENT_REPLAYED
OPTED_OUT = "this number has opted out of this client's messages"
INCLUDE_BODY = "body"  # GET /v1/messages/{id}?include=body
LOG_MAX_IDS = 100  # a batch's line names its first ids; count says how many there are

Rows = list[dict[str, Any]]


async def send_message(request: Request) -> Response:
    """``POST /v1/messages``: queue one message; 202 with the message."""
    services = services_of(request)
    principal = await auth.require(request, services.database, auth.Scope.SEND)
    data = await web.read_json_object(request, services.settings.max_body_bytes)
    message = schemas.parse_send(data)
    return await _accept(
        request,
        services,
        principal,
        route=SEND_ROUTE,
        body=data,
        build=lambda rules: _one(rules, message),
        render=lambda rows: schemas.message_out(rows[0]),
    )


async def send_batch(request: Request) -> Response:
    """``POST /v1/messages/batch``: queue every message or none; 202 with all of them."""
    services = services_of(request)
    principal = await auth.require(request, services.database, auth.Scope.SEND)
    settings = services.settings
    data = await web.read_json_object(request, settings.max_batch_body_bytes)
    batch = schemas.parse_batch(data, settings.max_batch_size)
    return await _accept(
        request,
        services,
        principal,
        route=BATCH_ROUTE,
        body=data,
        build=lambda rules: rules.rows(batch),
        render=lambda rows: {
            "count": len(rows),
            "messages": [schemas.message_out(row) for row in rows],
        },
    )


async def get_message(request: Request) -> Response:
    """``GET /v1/messages/{id}[?include=body]``: the message and its events; with
    ``include=body`` its body too (null once redacted), and an audit event says who read it."""
    services = services_of(request)
    message_id = _message_id(request)
    if _include_body(request):
        return await _message_with_body(request, services, message_id)
    async with services.database.read() as session:  # one connection for key and reads
        principal = await auth.require(request, services.database, auth.Scope.READ, session=session)
        found = await store.get_message(session, message_id, client=_only_own(principal))
    return _json(200, _detail(found))


async def _message_with_body(
    request: Request, services: Services, message_id: uuid.UUID
) -> Response:
    """The read and its audit event commit together: no body is shown unrecorded."""
    principal = await auth.require(request, services.database, auth.Scope.READ)
    actor = audit.actor_of(principal.client, principal.key_name or principal.key_id)
    async with services.database.write() as session:
        found = await store.get_message(session, message_id, client=_only_own(principal))
        await audit.record(session, audit.Action.BODY_READ, actor, message_id=message_id)
    log.info("message_body_read", message_id=str(message_id), actor=actor)
    return _json(200, {**_detail(found), "body": found.message["body"]})


def _detail(found: store.MessageWithEvents) -> dict[str, Any]:
    body = schemas.message_out(found.message)
    body["events"] = [schemas.event_out(event) for event in found.events]
    return body


def _include_body(request: Request) -> bool:
    """``include=body`` (the one value there is); any other value is a 400 on ``include``."""
    given = request.query_params.getlist("include")
    if len(given) > 1:
        raise errors.ValidationFailed({"include": ["must be given once"]})
    if given and given[0] != INCLUDE_BODY:
        raise errors.ValidationFailed(
            {"include": [f"unknown value {errors.echo(given[0])}: the only one is body"]}
        )
    return bool(given)


async def cancel_message(request: Request) -> Response:
    """``POST /v1/messages/{id}/cancel``: only while queued; 200 with the message."""
    services = services_of(request)
    principal = await auth.require(request, services.database, auth.Scope.SEND)
    message_id = _message_id(request)
    async with services.database.write() as session:
        row = await store.cancel_message(session, message_id, client=_only_own(principal))
    services.webhook_doorbell.ring()  # committed: its `message.cancelled` deliveries are due
    log.info("message_cancelled", message_id=str(message_id), client=principal.client)
    return _json(200, schemas.message_out(row))


async def _accept(
    request: Request,
    services: Services,
    principal: auth.Principal,
    *,
    route: str,
    body: dict[str, Any],
    build: Callable[[intake.Intake], Awaitable[Rows]],
    render: Callable[[Rows], dict[str, Any]],
) -> Response:
    """Replay a known Idempotency-Key, or check, store and answer (202)."""
    now = clock.utcnow()
    claim = idempotency.claim_of(request, principal.client, route, body)
    if claim is not None:
        previous = await idempotency.previous_answer(services.database, claim, now)
        if previous is not None:
            return _replayed(previous)
    rows = await build(intake.Intake(services.settings, principal.client, now, principal.policy))
    try:
        answer = await _store(services, principal, rows, render, claim=claim, now=now, route=route)
    except errors.IdempotencyKeyTaken:
        if claim is None:  # only storing a claim can raise it
            raise
        return _replayed(await idempotency.answer_of_winner(services.database, claim))
    except quotas.QuotaExceeded as exc:
        return await _refused(services, principal, claim, exc.refusal)
    _log_queued(rows, principal.client)
    return Response(answer.body, answer.status_code, media_type=JSON_MEDIA_TYPE)


async def _one(rules: intake.Intake, message: schemas.SendRequest) -> Rows:
    return [rules.row(message)]


async def _store(
    services: Services,
    principal: auth.Principal,
    rows: Rows,
    render: Callable[[Rows], dict[str, Any]],
    *,
    claim: idempotency.Claim | None,
    now: dt.datetime,
    route: str,
) -> idempotency.Answer:
    """Insert the rows (and the key's answer) in one transaction; the answer."""
    answer = None
    async with services.database.write() as session:
        await _refuse_opted_out(session, services, principal, rows, route)
        if principal.policy.limited:  # an unlimited client counts nothing
            await quotas.admit(session, principal.policy, rows, now)
        await store.insert_messages(session, rows)
        await wakeup.notify_if_due(session, rows)  # PostgreSQL: a worker wakes at commit
        if claim is not None:  # the answer is part of the transaction
            answer = idempotency.Answer(202, _dumps(render(rows)))
            ttl = services.settings.idempotency_ttl_seconds
            await idempotency.remember(session, claim, answer, now, ttl)
    if wakeup.due_now(rows):  # committed: an in-process dispatcher looks at once
        services.doorbell.ring()
    # Without a key the answer is built after the commit, outside the write lock.
    return answer or idempotency.Answer(202, _dumps(render(rows)))


async def _refuse_opted_out(
    session: AsyncSession, services: Services, principal: auth.Principal, rows: Rows, route: str
) -> None:
    """400 on each ``to`` that opted out of this client's messages; nothing is stored."""
    contacts = [row["contact"] for row in rows]
    key = services.settings.pseudonym_key_bytes()
    refused = await optouts.refused(session, contacts, principal.client, key)
    if not refused:
        return
    if route == SEND_ROUTE:
        raise errors.ValidationFailed({"to": [OPTED_OUT]})
    raise errors.ValidationFailed(
        {f"messages[{index}].to": [OPTED_OUT] for index, to in enumerate(contacts) if to in refused}
    )


async def _refused(
    services: Services,
    principal: auth.Principal,
    claim: idempotency.Claim | None,
    refusal: quotas.Refusal,
) -> Response:
    """429 with Retry-After; but a concurrent request with the same Idempotency-Key
    may have been stored while this one waited for the client's lock: its replay."""
    if claim is not None:
        previous = await idempotency.previous_answer(services.database, claim, clock.utcnow())
        if previous is not None:
            return _replayed(previous)
    metrics.QUOTA_REFUSALS.labels(limit=refusal.limit.value).inc()
    log.info(
        "send_refused_quota",
        client=principal.client,
        limit=refusal.limit.value,
        limit_value=refusal.value,
        used=refusal.used,
        requested=refusal.requested,
        retry_after=refusal.retry_after,
    )
    raise HTTPException(
        HTTPStatus.TOO_MANY_REQUESTS,
        refusal.detail,
        headers={"Retry-After": str(refusal.retry_after)},
    )


def _log_queued(rows: Sequence[dict[str, Any]], client: str) -> None:
    ids = [str(row["id"]) for row in rows[:LOG_MAX_IDS]]
    log.info("message_queued", message_ids=ids, count=len(rows), client=client)


def _message_id(request: Request) -> uuid.UUID:
    message_id: uuid.UUID = request.path_params["id"]  # the route's uuid converter
    return message_id


def _only_own(principal: auth.Principal) -> str | None:
    """The client whose messages a key may see: its own, or all for admin."""
    return None if auth.Scope.ADMIN in principal.scopes else principal.client


def _dumps(body: dict[str, Any]) -> bytes:
    return pydantic_core.to_json(body)


def _json(status_code: int, body: dict[str, Any]) -> Response:
    return Response(_dumps(body), status_code, media_type=JSON_MEDIA_TYPE)


def _replayed(answer: idempotency.Answer) -> Response:
    return Response(
        answer.body,
        answer.status_code,
        media_type=JSON_MEDIA_TYPE,
        headers={REPLAYED_HEADER: "true"},
    )


# POST /v1/messages (send_message) is served by ops' /v1/messages route, which
# also lists: one route per path, so a wrong method there is a 405.
routes = [
    Route(BATCH_ROUTE, send_batch, methods=["POST"]),
    # Only ids match, so /v1/messages/batch with the wrong method is a 405, not a 404.
    Route("/v1/messages/{id:uuid}", get_message, methods=["GET"]),
    Route("/v1/messages/{id:uuid}/cancel", cancel_message, methods=["POST"]),
]
