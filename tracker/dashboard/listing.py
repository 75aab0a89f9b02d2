"""The message list's form: the list API's own parameters, plus one search box.

The search takes a message id (opens it), a number in any accepted form, a
reference or a provider message id; empty form fields are simply not filters.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from dataclasses import dataclass
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import QueryParams

from tracker import errors
from tracker.dashboard import access
from tracker.domain import recipients, status
from tracker.ops import handlers, queries
from tracker.privacy import pseudonyms

STATUSES = [s.value for s in status.Status]
PAGE_SIZE = 50
SEARCH = "q"


@dataclass(frozen=True)
class Wanted:
    filter: queries.MessageFilter
    limit: int
    cursor: queries.Cursor | None
    search: str | None = None  # a reference or provider id, tried in that order
    message_id: uuid.UUID | None = None


def form_values(params: QueryParams) -> dict[str, list[str]]:
    return {name: params.getlist(name) for name in params}


def parse(params: QueryParams, viewer: access.Viewer, key: bytes) -> Wanted:
    """The form as a list filter for what the viewer may see (400s name the field);
    ``key`` (the pseudonym key) lets a number find its pseudonymised messages too."""
    data: dict[str, object] = {}
    for name in params:
        values = [v for v in params.getlist(name) if v.strip()]
        if name == SEARCH or not values:
            continue
        data[name] = values if name in handlers.ListParams.repeatable else values[0]
    data.setdefault("limit", str(PAGE_SIZE))
    found = handlers.ListParams.model_validate(data)
    client = access.visible_client(viewer, found.client)
    cursor = queries.decode_cursor(found.cursor) if found.cursor else None
    wanted = Wanted(handlers.message_filter(found, client, key=key), found.limit, cursor)
    query = (params.get(SEARCH) or "").strip()
    return _with_search(wanted, query, key) if query else wanted


def _with_search(wanted: Wanted, query: str, key: bytes) -> Wanted:
    try:
        return dataclasses.replace(wanted, message_id=uuid.UUID(query))
    except ValueError:
        pass
    try:
        contact = recipients.normalise_recipient(query).msisdn
    except errors.InvalidRecipient:
        return dataclasses.replace(wanted, search=query)
    by_number = dataclasses.replace(
        wanted.filter, contact=contact, contact_pseudonym=pseudonyms.of(contact, key)
    )
    return dataclasses.replace(wanted, filter=by_number)


async def search(session: AsyncSession, wanted: Wanted, cutoff: dt.datetime) -> queries.Page:
    """One page; a free-text search is a reference, or failing that a provider id."""
    if wanted.search is None:
        return await _page(session, wanted.filter, wanted, cutoff)
    by_reference = dataclasses.replace(wanted.filter, reference=wanted.search)
    page = await _page(session, by_reference, wanted, cutoff)
    if page.rows:
        return page
    by_provider = dataclasses.replace(wanted.filter, provider_message_id=wanted.search)
    return await _page(session, by_provider, wanted, cutoff)


async def _page(
    session: AsyncSession, wanted: queries.MessageFilter, asked: Wanted, cutoff: dt.datetime
) -> queries.Page:
    return await queries.list_messages(
        session, wanted, limit=asked.limit, cursor=asked.cursor, overdue_cutoff=cutoff
    )


def next_url(params: QueryParams, cursor: str | None) -> str | None:
    """The same form, one page further; None on the last page."""
    if cursor is None:
        return None
    pairs = [(name, value) for name, value in params.multi_items() if name != "cursor"]
    return f"/dashboard/messages?{urlencode([*pairs, ('cursor', cursor)])}"
