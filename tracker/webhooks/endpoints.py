"""Webhook endpoints and their subscriptions: the records, and all of their SQL.

An endpoint belongs to one client; its subscription is a set of message events
(``events.MESSAGE_EVENTS``). Callers pass ``client`` to see only that client's
endpoints (None: every client's, for admin keys), so another client's endpoint is
simply not found. The values handed out are frozen dataclasses, not ORM rows.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import models
from tracker.webhooks import events

DISABLED_BY_REQUEST = "disabled by request"


@dataclass(frozen=True)
class Endpoint:
    """One endpoint as stored, with its subscription in declared order."""

    id: uuid.UUID
    client: str
    url: str
    description: str | None
    events: tuple[events.EventType, ...]
    secret: str
    previous_secret: str | None
    previous_secret_until: dt.datetime | None
    disabled_at: dt.datetime | None
    disabled_reason: str | None
    failing_since: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def enabled(self) -> bool:
        return self.disabled_at is None


def _of(row: models.WebhookEndpoint, subscribed: Iterable[str]) -> Endpoint:
    chosen = set(subscribed)
    return Endpoint(
        id=row.id,
        client=row.client,
        url=row.url,
        description=row.description,
        events=tuple(e for e in events.MESSAGE_EVENTS if e in chosen),
        secret=row.secret,
        previous_secret=row.previous_secret,
        previous_secret_until=row.previous_secret_until,
        disabled_at=row.disabled_at,
        disabled_reason=row.disabled_reason,
        failing_since=row.failing_since,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def create(
    session: AsyncSession,
    *,
    client: str,
    url: str,
    subscription: Sequence[events.EventType],
    description: str | None,
    secret: str,
    now: dt.datetime,
) -> Endpoint:
    """Add an endpoint of ``client`` (which must exist) subscribed to ``subscription``."""
    row = models.WebhookEndpoint(
        client=client,
        url=url,
        description=description,
        secret=secret,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    _subscribe(session, row.id, subscription)
    await session.flush()
    return _of(row, subscription)


def _subscribe(
    session: AsyncSession, endpoint_id: uuid.UUID, subscription: Iterable[events.EventType]
) -> None:
    for event_type in subscription:
        session.add(models.WebhookSubscription(endpoint_id=endpoint_id, event_type=event_type))


async def _subscriptions(
    session: AsyncSession, endpoint_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[str]]:
    found: dict[uuid.UUID, list[str]] = {endpoint_id: [] for endpoint_id in endpoint_ids}
    if not endpoint_ids:
        return found
    s = models.WebhookSubscription
    rows = await session.execute(
        select(s.endpoint_id, s.event_type).where(s.endpoint_id.in_(endpoint_ids))
    )
    for endpoint_id, event_type in rows:
        found[endpoint_id].append(event_type)
    return found


async def get(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    *,
    client: str | None = None,
    for_update: bool = False,
) -> Endpoint | None:
    """The endpoint, or None if there is none (or it is not ``client``'s).

    ``for_update`` locks its row until the transaction ends, so two changes of one
    endpoint (a rotation and an update) apply one after the other.
    """
    e = models.WebhookEndpoint
    query = select(e).where(e.id == endpoint_id)
    if client is not None:
        query = query.where(e.client == client)
    if for_update:
        query = query.with_for_update()
    row = await session.scalar(query)
    if row is None:
        return None
    subscribed = await _subscriptions(session, [row.id])
    return _of(row, subscribed[row.id])


async def list_of(session: AsyncSession, client: str | None) -> list[Endpoint]:
    """``client``'s endpoints (None: everyone's), oldest first."""
    e = models.WebhookEndpoint
    query = select(e).order_by(e.client, e.created_at, e.id)
    if client is not None:
        query = query.where(e.client == client)
    rows = list(await session.scalars(query))
    subscribed = await _subscriptions(session, [row.id for row in rows])
    return [_of(row, subscribed[row.id]) for row in rows]


@dataclass(frozen=True)
class Changes:
    """What an update changes; None leaves a field as it is (``description`` aside)."""

    url: str | None = None
    subscription: tuple[events.EventType, ...] | None = None
    description_given: bool = False
    description: str | None = None
    enabled: bool | None = None


async def change(
    session: AsyncSession, endpoint: Endpoint, changes: Changes, now: dt.datetime
) -> Endpoint:
    """Apply ``changes``; enabling clears the disabled state and the failing run."""
    values: dict[str, object] = {"updated_at": now}
    if changes.url is not None:
        values["url"] = changes.url
    if changes.description_given:
        values["description"] = changes.description
    if changes.enabled is True and not endpoint.enabled:
        values.update(disabled_at=None, disabled_reason=None, failing_since=None)
    elif changes.enabled is False and endpoint.enabled:
        values.update(disabled_at=now, disabled_reason=DISABLED_BY_REQUEST)
    e = models.WebhookEndpoint
    await session.execute(update(e).where(e.id == endpoint.id).values(**values))
    if changes.subscription is not None:
        s = models.WebhookSubscription
        await session.execute(delete(s).where(s.endpoint_id == endpoint.id))
        _subscribe(session, endpoint.id, changes.subscription)
        await session.flush()
    return await _reread(session, endpoint.id)


async def rotate_secret(
    session: AsyncSession, endpoint: Endpoint, secret: str, until: dt.datetime, now: dt.datetime
) -> Endpoint:
    """``secret`` signs from now on; the current one also signs until ``until``.

    Only two secrets ever sign: a rotation within the grace period drops the oldest.
    """
    e = models.WebhookEndpoint
    await session.execute(
        update(e)
        .where(e.id == endpoint.id)
        .values(
            secret=secret,
            previous_secret=endpoint.secret,
            previous_secret_until=until,
            updated_at=now,
        )
    )
    return await _reread(session, endpoint.id)


async def remove(session: AsyncSession, endpoint_id: uuid.UUID) -> bool:
    """Delete the endpoint; its subscriptions, deliveries and attempts cascade."""
    e = models.WebhookEndpoint
    result = await session.execute(delete(e).where(e.id == endpoint_id))
    return bool(getattr(result, "rowcount", 0))


async def _reread(session: AsyncSession, endpoint_id: uuid.UUID) -> Endpoint:
    e = models.WebhookEndpoint
    row = await session.scalar(
        select(e).where(e.id == endpoint_id).execution_options(populate_existing=True)
    )
    if row is None:  # only within a transaction that holds the row: a bug, not input
        raise LookupError(f"webhook endpoint {endpoint_id} vanished")
    subscribed = await _subscriptions(session, [endpoint_id])
    return _of(row, subscribed[endpoint_id])
