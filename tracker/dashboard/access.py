"""Who is looking: the session cookie's key, checked again on every request."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tracker import auth, models
from tracker.clients import records
from tracker.dashboard import session
from tracker.services import services_of

LOGIN_PATH = "/dashboard/login"


class LoginRequired(Exception):
    """No valid session: pages redirect to the login form."""


@dataclass(frozen=True)
class Viewer:
    principal: auth.Principal
    session: session.Session
    csrf: str

    @property
    def is_admin(self) -> bool:
        return self.principal.allows(auth.Scope.ADMIN)

    @property
    def may_act(self) -> bool:
        """State-changing actions need ``send`` (or ``admin``)."""
        return self.principal.allows(auth.Scope.SEND)


async def principal_of_key_id(request: Request, key_id: str) -> auth.Principal | None:
    """The key's principal while it is unrevoked; None otherwise."""
    try:
        wanted = uuid.UUID(key_id)
    except ValueError:
        return None
    query = (
        select(models.ApiKey, models.Client)
        .join(models.Client, models.Client.name == models.ApiKey.client)
        .where(models.ApiKey.id == wanted, models.ApiKey.revoked_at.is_(None))
    )
    async with services_of(request).database.read() as db_session:
        found = (await db_session.execute(query)).one_or_none()
    if found is None:
        return None
    key, client = found
    return auth.Principal(
        key_id=str(key.id),
        client=key.client,
        scopes=auth.parse_scopes(key.scopes),
        policy=records.from_row(client),
    )


async def viewer(request: Request) -> Viewer:
    """The logged-in viewer with the ``read`` scope, or LoginRequired."""
    secret = session.secret_of(services_of(request).settings)
    cookie = request.cookies.get(session.COOKIE_NAME)
    opened = session.decode(cookie, secret) if cookie else None
    principal = await principal_of_key_id(request, opened.key_id) if opened else None
    if opened is None or principal is None or not principal.allows(auth.Scope.READ):
        raise LoginRequired
    request.state.client = principal.client
    return Viewer(principal, opened, session.csrf_token(opened, secret))


async def actor(request: Request, token: str | None) -> Viewer:
    """A viewer allowed to change state, with the form's CSRF token checked (403 if not)."""
    found = await viewer(request)
    if not session.csrf_ok(found.session, session.secret_of(services_of(request).settings), token):
        raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page")
    if not found.may_act:
        raise HTTPException(403, "this key lacks the 'send' scope")
    return found


def to_login(request: Request, _exc: Exception) -> Response:
    """LoginRequired's answer: back to the form, remembering the page asked for."""
    if request.headers.get("hx-request"):
        # An htmx poll cannot follow a redirect into a page: make the browser go.
        return Response(status_code=204, headers={"HX-Redirect": LOGIN_PATH})
    return RedirectResponse(f"{LOGIN_PATH}?next={request.url.path}", status_code=303)


def visible_client(found: Viewer, asked: str | None) -> str | None:
    """The client the pages show: the asked one (admin), else the key's own."""
    if found.is_admin:
        return asked or None
    return found.principal.client
