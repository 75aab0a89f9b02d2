"""The webhooks API: endpoints (``/v1/webhooks``), their deliveries, retry, recover, test.

Changes need the ``send`` scope, reads the ``read`` scope. A key sees its own
client's endpoints; ``admin`` sees every client's and may create one for any client.
Another client's endpoint is a 404, as if it did not exist. A URL is vetted
(``destinations``: SSRF rules, https) before any transaction opens, since it may
need a DNS lookup. After a commit that made deliveries pending, the in-process
deliverer's doorbell rings (other processes got the NOTIFY at commit).
"""

from __future__ import annotations

import datetime as dt
import uuid
from http import HTTPStatus
from typing import TypeVar

import pydantic_core
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tracker import auth, clock, errors, logs, web
from tracker.clients import records
from tracker.sending import schemas as sending_schemas
from tracker.services import Services, services_of
from tracker.webhooks import endpoints, recovery, schemas, signing

log = logs.get_logger(__name__)
COLLECTION = "/v1/webhooks"
ONE = "/v1/webhooks/{id:uuid}"
ROTATE = ONE + "/rotate-secret"
DELIVERIES = ONE + "/deliveries"
RECOVER = ONE + "/recover"
TEST = ONE + "/test"
RETRY = "/v1/webhooks/deliveries/{delivery_id:int}/retry"
Params = TypeVar("Params", bound=BaseModel)


def _own_client(principal: auth.Principal) -> str | None:
    """The client whose endpoints a key sees: its own, or every one for admin."""
    return None if principal.allows(auth.Scope.ADMIN) else principal.client


def _owner(principal: auth.Principal, asked: str | None) -> str:
    """The client a new endpoint is for: the key's own, or any one an admin names."""
    if asked is None or asked == principal.client:
        return principal.client
    if not principal.allows(auth.Scope.ADMIN):
        raise HTTPException(403, "this key may only manage its own client's webhooks")
    return asked


def _endpoint_id(request: Request) -> uuid.UUID:
    endpoint_id: uuid.UUID = request.path_params["id"]  # the route's uuid converter
    return endpoint_id


async def _visible(
    session: AsyncSession,
    principal: auth.Principal,
    endpoint_id: uuid.UUID,
    *,
    for_update: bool = False,
) -> endpoints.Endpoint:
    """The endpoint if the key may see it; a 404 otherwise (another client's too)."""
    found = await endpoints.get(
        session, endpoint_id, client=_own_client(principal), for_update=for_update
    )
    if found is None:
        raise errors.NotFound(f"no webhook endpoint {endpoint_id}")
    return found


def _query(model: type[Params], request: Request) -> Params:
    """The query string as ``model``; a repeated parameter is a 400 (as ``ops`` reads its)."""
    data: dict[str, str] = {}
    for name in request.query_params:
        values = request.query_params.getlist(name)
        if len(values) > 1:
            raise errors.ValidationFailed({name: ["must be given once"]})
        data[name] = values[0]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise errors.ValidationFailed(sending_schemas.field_errors(exc)) from None


async def list_endpoints(request: Request) -> Response:
    """``GET /v1/webhooks``: the key's client's endpoints (admin: all, or ``?client=``)."""
    services = services_of(request)
    async with services.database.read() as session:
        principal = await auth.require(request, services.database, auth.Scope.READ, session=session)
        asked = _query(schemas.ListParams, request).client
        client = _own_client(principal) if asked is None else _owner(principal, asked)
        found = await endpoints.list_of(session, client)
    return _json(HTTPStatus.OK, {"webhooks": [schemas.endpoint_out(e) for e in found]})


async def create_endpoint(request: Request) -> Response:
    """``POST /v1/webhooks``: 201 with the endpoint and its secret (shown only here)."""
    services = services_of(request)
    principal = await auth.require(request, services.database, auth.Scope.SEND)
    data = await web.read_json_object(request, services.settings.max_body_bytes)
    new = schemas.validated(schemas.NewEndpoint, data)
    subscription = schemas.subscription(new.events)
    client = _owner(principal, new.client)
    url = await schemas.check_url(new.url, services.settings)
    async with services.database.write() as session:
        if client != principal.client and await records.get(session, client) is None:
            raise errors.ValidationFailed({"client": [f"no client named {errors.echo(client)}"]})
        created = await endpoints.create(
            session,
            client=client,
            url=url,
            subscription=subscription,
            description=new.description,
            secret=signing.new_secret(),
            now=clock.utcnow(),
        )
    log.info("webhook_endpoint_created", endpoint_id=str(created.id), client=client)
    return _json(HTTPStatus.CREATED, schemas.with_secret(created))


async def get_endpoint(request: Request) -> Response:
    """``GET /v1/webhooks/{id}``: the endpoint and its deliveries' numbers."""
    services = services_of(request)
    endpoint_id = _endpoint_id(request)
    async with services.database.read() as session:
        principal = await auth.require(request, services.database, auth.Scope.READ, session=session)
        found = await _visible(session, principal, endpoint_id)
        counts = await recovery.overview(session, endpoint_id)
    return _json(HTTPStatus.OK, schemas.detail_out(found, counts))


async def update_endpoint(request: Request) -> Response:
    """``PATCH /v1/webhooks/{id}``: url (vetted again), events, description, enabled."""
    services = services_of(request)
    principal = await auth.require(request, services.database, auth.Scope.SEND)
    endpoint_id = _endpoint_id(request)
    data = await web.read_json_object(request, services.settings.max_body_bytes)
    given = schemas.validated(schemas.EndpointChanges, data)
    url = None if given.url is None else await schemas.check_url(given.url, services.settings)
    changes = schemas.changes_of(given, url)
    async with services.database.write() as session:
        changed = await recovery.change_endpoint(
            session, endpoint_id, changes, client=_own_client(principal)
        )
    log.info("webhook_endpoint_updated", endpoint_id=str(endpoint_id), fields=sorted(data))
    return _json(HTTPStatus.OK, schemas.endpoint_out(changed))


async def delete_endpoint(request: Request) -> Response:
    """``DELETE /v1/webhooks/{id}``: 204; its deliveries and attempts go with it."""
    services = services_of(request)
    principal = await auth.require(request, services.database, auth.Scope.SEND)
    endpoint_id = _endpoint_id(request)
    async with services.database.write() as session:
        found = await _visible(session, principal, endpoint_id)
        await endpoints.remove(session, endpoint_id)
    log.info("webhook_endpoint_deleted", endpoint_id=str(endpoint_id), client=found.client)
    return Response(status_code=HTTPStatus.NO_CONTENT)


async def rotate_secret(request: Request) -> Response:
    """``POST /v1/webhooks/{id}/rotate-secret``: a new secret; the old one signs a while."""
    services = services_of(request)
    principal = await auth.require(request, services.database, auth.Scope.SEND)
    endpoint_id = _endpoint_id(request)
    now = clock.utcnow()
    until = now + dt.timedelta(seconds=services.settings.webhook_secret_grace_seconds)
    async with services.database.write() as session:
        current = await _visible(session, principal, endpoint_id, for_update=True)
        rotated = await endpoints.rotate_secret(session, current, signing.new_secret(), until, now)
    log.info("webhook_secret_rotated", endpoint_id=str(endpoint_id), previous_until=until)
    return _json(HTTPStatus.OK, schemas.with_secret(rotated))


async def list_deliveries(request: Request) -> Response:
    """``GET /v1/webhooks/{id}/deliveries?status=failed``: each with its attempts."""
    services = services_of(request)
    endpoint_id = _endpoint_id(request)
    async with services.database.read() as session:
        principal = await auth.require(request, services.database, auth.Scope.READ, session=session)
        params = _query(schemas.DeliveriesParams, request)
        await _visible(session, principal, endpoint_id)
        page = await recovery.deliveries(
            session, endpoint_id, status=params.status, limit=params.limit, cursor=params.cursor
        )
    return _json(HTTPStatus.OK, schemas.page_out(page))


async def retry_delivery(request: Request) -> Response:
    """``POST /v1/webhooks/deliveries/{id}/retry``: sent again, its schedule restarted."""
    services = services_of(request)
    principal = await auth.require(request, services.database, auth.Scope.SEND)
    delivery_id: int = request.path_params["delivery_id"]
    async with services.database.write() as session:
        retried = await recovery.retry(
            session, delivery_id, clock.utcnow(), client=_own_client(principal)
        )
    _ring(services)
    log.info("webhook_delivery_retried", delivery_id=delivery_id)
    return _json(HTTPStatus.OK, schemas.delivery_out(retried))


async def recover_endpoint(request: Request) -> Response:
    """``POST /v1/webhooks/{id}/recover?since=TIME``: every failed delivery since then."""
    services = services_of(request)
    principal = await auth.require(request, services.database, auth.Scope.SEND)
    endpoint_id = _endpoint_id(request)
    since = _query(schemas.RecoverParams, request).since
    async with services.database.write() as session:
        found = await _visible(session, principal, endpoint_id)
        recovered = await recovery.recover(session, found, since, clock.utcnow())
    if recovered:
        _ring(services)
    log.info("webhook_deliveries_recovered", endpoint_id=str(endpoint_id), count=recovered)
    return _json(HTTPStatus.OK, {"recovered": recovered})


async def send_test(request: Request) -> Response:
    """``POST /v1/webhooks/{id}/test``: 202 with the ``webhook.test`` delivery queued."""
    services = services_of(request)
    principal = await auth.require(request, services.database, auth.Scope.SEND)
    endpoint_id = _endpoint_id(request)
    async with services.database.write() as session:
        found = await _visible(session, principal, endpoint_id)
        queued = await recovery.queue_test(session, found, clock.utcnow())
    _ring(services)
    log.info("webhook_test_queued", endpoint_id=str(endpoint_id), delivery_id=queued.id)
    return _json(HTTPStatus.ACCEPTED, schemas.delivery_out(queued))


async def collection(request: Request) -> Response:
    """``/v1/webhooks``: GET lists, POST creates; one route, so another method is a 405."""
    if request.method == "POST":
        return await create_endpoint(request)
    return await list_endpoints(request)


async def one(request: Request) -> Response:
    """``/v1/webhooks/{id}``: GET, PATCH and DELETE."""
    if request.method == "PATCH":
        return await update_endpoint(request)
    if request.method == "DELETE":
        return await delete_endpoint(request)
    return await get_endpoint(request)


def _ring(services: Services) -> None:
    """Committed: the in-process deliverer looks at once."""
    services.webhook_doorbell.ring()


def _json(status_code: HTTPStatus, body: object) -> Response:
    return Response(pydantic_core.to_json(body), status_code, media_type=web.JSON_MEDIA_TYPE)


routes = [
    Route(COLLECTION, collection, methods=["GET", "POST"]),
    Route(ONE, one, methods=["GET", "PATCH", "DELETE"]),
    Route(ROTATE, rotate_secret, methods=["POST"]),
    Route(DELIVERIES, list_deliveries, methods=["GET"]),
    Route(RECOVER, recover_endpoint, methods=["POST"]),
    Route(TEST, send_test, methods=["POST"]),
    Route(RETRY, retry_delivery, methods=["POST"]),
]
