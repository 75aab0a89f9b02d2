"""The admin API for clients: ``GET/POST /v1/clients``, ``GET/PATCH /v1/clients/{name}``.

Every route needs the ``admin`` scope. Bodies are checked by
``clients.schemas``, the same rules as ``tracker clients create/update``.
It lives in ``ops``, not in ``clients``: it needs ``auth``, which imports
``clients.records``, and packages import each other one way.
"""

from __future__ import annotations

from http import HTTPStatus

import pydantic_core
from sqlalchemy import exc as sa_exc
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tracker import auth, errors, logs, web
from tracker.clients import overview, records, schemas
from tracker.services import services_of

log = logs.get_logger(__name__)
COLLECTION = "/v1/clients"
ONE = "/v1/clients/{name}"


async def list_clients(request: Request) -> Response:
    """``GET /v1/clients``: every client and its settings, by name."""
    services = services_of(request)
    async with services.database.read() as session:
        await auth.require(request, services.database, auth.Scope.ADMIN, session=session)
        found = await records.list_all(session)
        active = await overview.active_key_counts(session)
    body = {"clients": [schemas.client_out(c, active.get(c.name, 0)) for c in found]}
    return _json(HTTPStatus.OK, body)


async def create_client(request: Request) -> Response:
    """``POST /v1/clients``: 201 with the new client; 409 if the name is taken."""
    services = services_of(request)
    await auth.require(request, services.database, auth.Scope.ADMIN)
    data = await web.read_json_object(request, services.settings.max_body_bytes)
    name, values = schemas.parse_new(data, services.settings)
    try:
        async with services.database.write() as session:
            created = await records.create(session, name, **values)
    except (records.ClientExists, sa_exc.IntegrityError):  # the latter: a concurrent create
        raise errors.Conflict(f"a client named {name!r} already exists") from None
    log.info("client_created", client=name, fields=sorted(values))
    return _json(HTTPStatus.CREATED, schemas.client_out(created, 0))


async def get_client(request: Request) -> Response:
    """``GET /v1/clients/{name}``: its settings and its keys."""
    services = services_of(request)
    async with services.database.read() as session:
        await auth.require(request, services.database, auth.Scope.ADMIN, session=session)
        name = _path_name(request)
        found = await records.get(session, name)
        if found is None:
            raise errors.NotFound(f"no client named {errors.echo(name)}")
        keys = await overview.keys_of(session, name)
    body = schemas.client_out(found, sum(not key.revoked for key in keys))
    body["keys"] = [
        schemas.KeyOut(
            name=key.name,
            prefix=key.prefix,
            scopes=list(key.scopes),
            created_at=key.created_at,
            revoked=key.revoked,
        ).model_dump(mode="json")
        for key in keys
    ]
    return _json(HTTPStatus.OK, body)


async def update_client(request: Request) -> Response:
    """``PATCH /v1/clients/{name}``: change the fields given; ``null`` clears a limit."""
    services = services_of(request)
    await auth.require(request, services.database, auth.Scope.ADMIN)
    name = _path_name(request)
    data = await web.read_json_object(request, services.settings.max_body_bytes)
    async with services.database.write() as session:
        current = await records.get(session, name, for_update=True)
        if current is None:
            raise errors.NotFound(f"no client named {errors.echo(name)}")
        changes = schemas.parse_changes(data, current, services.settings)
        changed = await records.update(session, name, **changes)
        keys = await overview.keys_of(session, name)
    log.info("client_updated", client=name, fields=sorted(changes))
    return _json(HTTPStatus.OK, schemas.client_out(changed, sum(not k.revoked for k in keys)))


async def clients_collection(request: Request) -> Response:
    """``/v1/clients``: one route for GET and POST, so another method is a 405."""
    if request.method == "POST":
        return await create_client(request)
    return await list_clients(request)


async def one_client(request: Request) -> Response:
    """``/v1/clients/{name}``: GET and PATCH."""
    if request.method == "PATCH":
        return await update_client(request)
    return await get_client(request)


def _path_name(request: Request) -> str:
    """The client named in the path; one no client could have is a 404 before any SQL
    (PostgreSQL refuses a NUL in text, which would be a 500)."""
    name: str = request.path_params["name"]
    try:
        return records.check_name(name)
    except ValueError:
        raise errors.NotFound(f"no client named {errors.echo(name)}") from None


def _json(status_code: HTTPStatus, body: object) -> Response:
    return Response(pydantic_core.to_json(body), status_code, media_type=web.JSON_MEDIA_TYPE)


routes = [
    Route(COLLECTION, clients_collection, methods=["GET", "POST"]),
    Route(ONE, one_client, methods=["GET", "PATCH"]),
]
