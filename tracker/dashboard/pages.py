"""Rendering: Jinja2 templates, the security headers of every dashboard answer, static files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

import tracker
from tracker.domain import recipients

HERE = Path(__file__).parent
STATIC_PREFIX = "/dashboard/static"
# No inline script or style anywhere: htmx and the charts come from files under 'self'.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; "
    "frame-ancestors 'none'"
)
# Swagger UI sets style attributes from its React code; its scripts are still only 'self'.
DOCS_CSP = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
STATIC_MAX_AGE = 86_400

_templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True),
    auto_reload=False,
)
_templates.globals["static"] = lambda path: f"{STATIC_PREFIX}/{path}?v={tracker.__version__}"
_templates.globals["recipient"] = lambda row: recipients.shown(row["to"], row.get("to_pseudonym"))


def secure(response: Response, csp: str = CSP) -> Response:
    """The headers every dashboard page, fragment and file carries."""
    response.headers["Content-Security-Policy"] = csp
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def render(name: str, status_code: int = 200, csp: str = CSP, **context: Any) -> Response:
    """A template as an HTML answer, never cached (it shows live data)."""
    html = _templates.get_template(name).render(**context)
    response = HTMLResponse(html, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    return secure(response, csp)


class Static(StaticFiles):
    """The vendored assets and our own, cached by browsers (URLs carry the version)."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = f"public, max-age={STATIC_MAX_AGE}"
        return secure(response)

    async def get_response(self, path: str, scope: Scope) -> Response:
        return secure(await super().get_response(path, scope))


static_files = Static(directory=HERE / "static")
