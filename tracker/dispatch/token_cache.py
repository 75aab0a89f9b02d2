"""The KIMISMS access token, cached in the database so that every process shares it.

The provider client keeps the token in memory too and asks here before it asks
KIMISMS; this module holds the cache's SQL, so the client holds none.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete

from tracker import clock, db, models

REFRESH_MARGIN = dt.timedelta(days=1)


@dataclass(frozen=True)
class Token:
    """An access token and its life."""

    value: str
    expires_at: dt.datetime
    obtained_at: dt.datetime

    def is_fresh(self) -> bool:
        """Valid for longer than the refresh margin (a tenth of its life, at most a day)."""
        margin = min(REFRESH_MARGIN, (self.expires_at - self.obtained_at) / 10)
        return self.expires_at - clock.utcnow() > margin


async def load(database: db.Database, client_id: str) -> Token | None:
    """The token stored for this provider account, if any (fresh or not)."""
    async with database.read() as session:
        row = await session.get(models.ProviderToken, client_id)
    return Token(row.access_token, row.expires_at, row.obtained_at) if row else None


async def save(database: db.Database, client_id: str, token: Token) -> None:
    """Replace the stored token of this provider account."""
    async with database.write() as session:
        await session.execute(
            delete(models.ProviderToken).where(models.ProviderToken.client_id == client_id)
        )
        session.add(
            models.ProviderToken(
                client_id=client_id,
                access_token=token.value,
                expires_at=token.expires_at,
                obtained_at=token.obtained_at,
            )
        )
