"""Logging in and out: an API key entered once becomes the signed session cookie.

The login form carries a CSRF token bound to a pre-session cookie (``session.
login_token``): a POST without both, or with a token of another cookie, is a 403
with a fresh form, so another site cannot log a browser into its own key.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tracker import auth, logs
from tracker.dashboard import access, forms, pages, session
from tracker.services import services_of

log = logs.get_logger(__name__)
INVALID_KEY = "That key is not valid, or lacks the read scope."
STALE_FORM = "The login form had expired or came from elsewhere: log in again."


def _next(path: str | None) -> str:
    """Only our own pages: never an absolute or scheme-relative URL."""
    if path and path.startswith("/dashboard") and not path.startswith("//"):
        return path
    return "/dashboard"


def form(
    request: Request, status_code: int = 200, error: str | None = None, **extra: str
) -> Response:
    """The login form with its token; sets the pre-session cookie unless it has one."""
    nonce = request.cookies.get(session.LOGIN_COOKIE_NAME) or session.new_login_nonce()
    secret = session.secret_of(services_of(request).settings)
    target = _next(extra.get("next", request.query_params.get("next")))
    response = pages.render(
        "login.html", status_code=status_code, error=error, next=target,
        login_csrf=session.login_token(nonce, secret),
    )  # fmt: skip
    response.set_cookie(
        session.LOGIN_COOKIE_NAME,
        nonce,
        max_age=session.LOGIN_LIFETIME_SECONDS,
        path=session.LOGIN_COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=session.cookie_secure(request.url.hostname),
    )
    return response


async def login_page(request: Request) -> Response:
    return form(request)


async def login(request: Request) -> Response:
    """A read key and the form's token open a session; the key itself is not kept."""
    fields = await forms.read(request)
    services = services_of(request)
    secret = session.secret_of(services.settings)
    nonce = request.cookies.get(session.LOGIN_COOKIE_NAME)
    if not session.login_ok(nonce, secret, fields.get("csrf")):
        log.info("dashboard_login_refused", reason="csrf")
        return form(request, 403, STALE_FORM, next=fields.get("next", ""))
    principal = await auth.verify_key(services.database, fields.get("key", "").strip())
    if principal is None or not principal.allows(auth.Scope.READ):
        return form(request, 401, INVALID_KEY, next=fields.get("next", ""))
    opened = session.new(principal.key_id)
    response = RedirectResponse(_next(fields.get("next")), status_code=303)
    response.set_cookie(
        session.COOKIE_NAME,
        session.encode(opened, secret),
        max_age=session.LIFETIME_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=session.cookie_secure(request.url.hostname),
    )
    response.delete_cookie(session.LOGIN_COOKIE_NAME, path=session.LOGIN_COOKIE_PATH)
    log.info("dashboard_login", client=principal.client)
    return pages.secure(response)


async def logout(request: Request) -> Response:
    fields = await forms.read(request)
    found = await access.viewer(request)
    secret = session.secret_of(services_of(request).settings)
    if session.csrf_ok(found.session, secret, fields.get("csrf")):
        response = RedirectResponse(access.LOGIN_PATH, status_code=303)
        response.delete_cookie(session.COOKIE_NAME, path="/")
        return pages.secure(response)
    return form(request, 403, "Reload and try again.")
