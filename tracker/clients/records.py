"""The clients table: create, read, list and change a client and its limits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import clock, db, models

MAX_NAME_LENGTH = 64
DEFAULT_WEIGHT = 1
# The fields a caller may set; the name never changes (messages carry it).
RETENTION = ("retention_body", "retention_contact", "retention_message")
SETTABLE = frozenset(
    {
        "sender_names", "default_sender", "rate_per_minute", "daily_cap", "high_per_minute",
        "weight", *RETENTION,
    }
)  # fmt: skip


class ClientExists(ValueError):
    """A client of that name exists already."""


class UnknownClient(LookupError):
    """No client of that name."""


@dataclass(frozen=True)
class Client:
    """A client and its limits; a limit of None is no limit."""

    name: str
    sender_names: tuple[str, ...] | None = None  # None: every TRACKER_SENDER_NAMES
    default_sender: str | None = None
    rate_per_minute: int | None = None
    daily_cap: int | None = None
    high_per_minute: int | None = None
    weight: int = DEFAULT_WEIGHT
    created_at: dt.datetime | None = None
    # Overrides of TRACKER_RETENTION_* ("7d", "keep"); None: the setting (privacy.retention).
    retention_body: str | None = None
    retention_contact: str | None = None
    retention_message: str | None = None

    @property
    def limited(self) -> bool:
        """Whether admission must count anything for this client."""
        return any(
            limit is not None
            for limit in (self.rate_per_minute, self.daily_cap, self.high_per_minute)
        )


def check_name(name: str) -> str:
    """A client's or a key's name: 1-64 letters, digits, '-' or '_'; else ValueError."""
    if (
        not name
        or len(name) > MAX_NAME_LENGTH
        or not name.replace("-", "").replace("_", "").isascii()
        or not name.replace("-", "").replace("_", "").isalnum()
    ):
        raise ValueError("a name is 1-64 letters, digits, '-' or '_'")
    return name


def from_row(row: models.Client) -> Client:
    return Client(
        name=row.name,
        sender_names=tuple(row.sender_names) if row.sender_names is not None else None,
        default_sender=row.default_sender,
        rate_per_minute=row.rate_per_minute,
        daily_cap=row.daily_cap,
        high_per_minute=row.high_per_minute,
        weight=row.weight,
        created_at=row.created_at,
        retention_body=row.retention_body,
        retention_contact=row.retention_contact,
        retention_message=row.retention_message,
    )


def _column_values(changes: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(changes) - SETTABLE
    if unknown:
        raise ValueError(f"cannot set {', '.join(sorted(unknown))}")
    values = dict(changes)
    if values.get("sender_names") is not None:
        values["sender_names"] = list(values["sender_names"])
    return values


async def get(session: AsyncSession, name: str, *, for_update: bool = False) -> Client | None:
    """The client, or None; ``for_update`` locks its row until the transaction ends
    (a change checked against the current settings must not race another)."""
    row = await session.get(models.Client, name, with_for_update=for_update or None)
    return from_row(row) if row is not None else None


async def list_all(session: AsyncSession) -> list[Client]:
    rows = await session.scalars(select(models.Client).order_by(models.Client.name))
    return [from_row(row) for row in rows]


async def create(session: AsyncSession, name: str, **changes: Any) -> Client:
    """Add a client; ClientExists if the name is taken."""
    check_name(name)
    if await session.get(models.Client, name) is not None:
        raise ClientExists(f"a client named {name!r} already exists")
    values = {"weight": DEFAULT_WEIGHT, **_column_values(changes)}
    now = clock.utcnow()
    row = models.Client(name=name, created_at=now, updated_at=now, **values)
    session.add(row)
    await session.flush()
    return from_row(row)


async def ensure(session: AsyncSession, name: str) -> Client:
    """The client of that name, created with no limits if missing.

    Safe when two sessions ensure the same new name at once: the insert yields
    to the one that committed first instead of failing on the key.
    """
    check_name(name)
    now = clock.utcnow()
    await session.execute(
        db.upsert(session, models.Client)
        .values(name=name, weight=DEFAULT_WEIGHT, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    found = await get(session, name)
    if found is None:  # cannot happen: inserted, or there already
        raise UnknownClient(f"no client named {name!r}")
    return found


async def update(session: AsyncSession, name: str, **changes: Any) -> Client:
    """Change some of a client's settings; UnknownClient if there is none."""
    row = await session.get(models.Client, name, with_for_update=True)
    if row is None:
        raise UnknownClient(f"no client named {name!r}")
    for field, value in _column_values(changes).items():
        setattr(row, field, value)
    row.updated_at = clock.utcnow()
    await session.flush()
    return from_row(row)
