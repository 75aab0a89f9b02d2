"""What an operator sees of clients beside their settings: their keys, their messages.

Read by ``tracker clients list/show`` and the admin API. Keys are read from
the table here (not through ``auth``, which imports this package).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import models


@dataclass(frozen=True)
class Key:
    """One API key of a client (never the key itself)."""

    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: dt.datetime
    revoked: bool


async def active_key_counts(session: AsyncSession) -> dict[str, int]:
    """Client name -> how many of its keys are not revoked (absent: none)."""
    key = models.ApiKey
    rows = await session.execute(
        select(key.client, func.count()).where(key.revoked_at.is_(None)).group_by(key.client)
    )
    return dict(rows.all())


async def keys_of(session: AsyncSession, client: str) -> list[Key]:
    """A client's keys, oldest first, revoked ones included."""
    key = models.ApiKey
    rows = await session.scalars(
        select(key).where(key.client == client).order_by(key.created_at, key.name)
    )
    return [
        Key(
            name=row.name,
            prefix=row.prefix,
            scopes=tuple(row.scopes.split(",")),
            created_at=row.created_at,
            revoked=row.revoked_at is not None,
        )
        for row in rows
    ]


async def message_counts(session: AsyncSession, client: str) -> dict[str, int]:
    """A client's messages by status (every message it ever sent: a scan of its rows)."""
    message = models.Message
    rows = await session.execute(
        select(message.status, func.count())
        .where(message.client == client)
        .group_by(message.status)
    )
    return dict(rows.all())
