"""The dashboard's small urlencoded forms (login key, CSRF token, a choice or two)."""

from __future__ import annotations

import urllib.parse

from starlette.requests import Request

from tracker import web

MAX_FORM_BYTES = 4096


async def read(request: Request) -> dict[str, str]:
    """The form's fields; a body over MAX_FORM_BYTES is refused (413)."""
    body = await web.read_body(request, MAX_FORM_BYTES)
    pairs = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), max_num_fields=8)
    return dict(pairs)
