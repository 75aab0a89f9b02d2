"""API keys: created once, stored as a hash, checked in constant time.

A key is ``kt_`` + 43 random URL-safe characters (256 bits), so a plain
SHA-256 is enough to store it (no password stretching needed for random keys).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException
from starlette.requests import Request

from tracker import clock, db, models
from tracker.clients import records

KEY_PREFIX = "kt_"


class Scope(enum.StrEnum):
    SEND = "send"
    READ = "read"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """The caller behind a valid key."""

    key_id: str
    client: str
    scopes: frozenset[Scope]
    # The client's settings as the key was checked: its limits, for admission.
    policy: records.Client
    key_name: str = ""  # the key's own name, for the audit log (privacy.audit.actor_of)

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes or Scope.ADMIN in self.scopes


@dataclass(frozen=True)
class KeyInfo:
    name: str
    client: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: str
    revoked: bool


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(raw: str) -> frozenset[Scope]:
    """``send,read`` -> scopes; an unknown scope is a ValueError naming it."""
    names = [part.strip().lower() for part in raw.split(",") if part.strip()]
    if not names:
        raise ValueError("at least one scope is required (send, read, admin)")
    try:
        return frozenset(Scope(name) for name in names)
    except ValueError:
        bad = next(n for n in names if n not in set(Scope))
        raise ValueError(f"unknown scope {bad!r}: use send, read or admin") from None


async def create_key(
    database: db.Database, name: str, scopes: frozenset[Scope], *, client: str | None = None
) -> str:
    """Store a new key of ``client`` and return it; this is the only time it is ever seen.

    Without ``client``, the key belongs to the client named like it, created if
    missing (so one command sets up a new app).
    """
    records.check_name(name)
    owner = records.check_name(client) if client is not None else name
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    async with database.write() as session:
        active = (models.ApiKey.name == name) & models.ApiKey.revoked_at.is_(None)
        if await session.scalar(select(models.ApiKey.id).where(active)) is not None:
            raise ValueError(f"an active key named {name!r} already exists")
        if client is None:
            await records.ensure(session, owner)
        elif await records.get(session, owner) is None:
            raise records.UnknownClient(f"no client named {owner!r}: create it first")
        session.add(
            models.ApiKey(
                name=name,
                client=owner,
                key_hash=hash_key(key),
                prefix=key[:10],
                scopes=",".join(sorted(scopes)),
            )
        )
    return key


async def list_keys(database: db.Database) -> list[KeyInfo]:
    async with database.read() as session:
        rows = await session.scalars(select(models.ApiKey).order_by(models.ApiKey.created_at))
        return [
            KeyInfo(
                name=row.name,
                client=row.client,
                prefix=row.prefix,
                scopes=tuple(row.scopes.split(",")),
                created_at=row.created_at.isoformat(timespec="seconds"),
                revoked=row.revoked_at is not None,
            )
            for row in rows
        ]


async def revoke_key(database: db.Database, name: str) -> bool:
    """Revoke by name; False if there is no such active key."""
    async with database.write() as session:
        result = await session.execute(
            update(models.ApiKey)
            .where(models.ApiKey.name == name, models.ApiKey.revoked_at.is_(None))
            .values(revoked_at=clock.utcnow())
        )
        return bool(getattr(result, "rowcount", 0))


# Built once: constructing the expression costs more than running it.
_KEY_BY_HASH = (
    select(models.ApiKey, models.Client)
    .join(models.Client, models.Client.name == models.ApiKey.client)
    .where(models.ApiKey.key_hash == bindparam("digest"))
)


async def verify_key(
    database: db.Database, key: str, *, session: AsyncSession | None = None
) -> Principal | None:
    """The principal for a valid, unrevoked key; None otherwise.

    ``session``: look it up in the caller's read session (one connection and
    transaction for the whole request) instead of a session of its own.
    """
    if not key.startswith(KEY_PREFIX):
        return None
    digest = hash_key(key)
    if session is None:
        async with database.read() as own:
            found = (await own.execute(_KEY_BY_HASH, {"digest": digest})).one_or_none()
    else:
        found = (await session.execute(_KEY_BY_HASH, {"digest": digest})).one_or_none()
    if found is None:
        return None
    row, client = found
    if row.revoked_at is not None or not hmac.compare_digest(row.key_hash, digest):
        return None
    return Principal(
        key_id=str(row.id),
        client=row.client,
        scopes=parse_scopes(row.scopes),
        policy=records.from_row(client),
        key_name=row.name,
    )


def bearer_token(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


async def require(
    request: Request, database: db.Database, scope: Scope, *, session: AsyncSession | None = None
) -> Principal:
    """The caller's principal, or 401 (no or bad key) / 403 (missing scope)."""
    key = bearer_token(request)
    principal = await verify_key(database, key, session=session) if key else None
    if principal is None:
        raise HTTPException(
            401, "a valid API key is required", headers={"WWW-Authenticate": "Bearer"}
        )
    request.state.client = principal.client
    if not principal.allows(scope):
        raise HTTPException(403, f"this key lacks the {scope.value!r} scope")
    return principal
