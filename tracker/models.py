"""Tables. The message row is the job: there is no second queue to drift from it.

Ids are UUIDv7 (time-ordered), so new rows land at the end of the primary-key
index instead of at random places in it.
"""

# Over 400 lines, on purpose: every table in one module, so that the migrations
# test compares one metadata with the migrated schema.

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tracker import ids
from tracker.clock import utcnow
from tracker.db import UTCDateTime

# Stable constraint names, so migrations can refer to them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY, not BIGINT.
AutoId = BigInteger().with_variant(Integer(), "sqlite")


def new_id() -> uuid.UUID:
    """A time-ordered UUID (version 7): inserts land at the end of the index."""
    return ids.uuid7()


# The retention job's partial indexes on messages (name -> condition), migration 0007.
RETENTION_INDEXES = {
    "redaction_due": "final_at IS NOT NULL AND body IS NOT NULL",
    "pseudonymisation_due": "final_at IS NOT NULL AND pseudonymised_at IS NULL",
    "final": "final_at IS NOT NULL",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {  # noqa: RUF012
        dt.datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    # The owner (a client's name, which never changes): every message has one,
    # so the claim's round robin over clients sees every due message.
    client: Mapped[str] = mapped_column(String(64), ForeignKey("clients.name"))
    sender_name: Mapped[str] = mapped_column(String(16))
    # The number (254712345678); '' once pseudonymised, when only its keyed hash
    # (privacy.pseudonyms) is left in contact_pseudonym.
    contact: Mapped[str] = mapped_column(String(16))
    contact_pseudonym: Mapped[str | None] = mapped_column(String(64))
    network: Mapped[str | None] = mapped_column(String(32))
    body: Mapped[str | None] = mapped_column(Text)  # None once redacted by retention
    segments: Mapped[int] = mapped_column(SmallInteger)
    encoding: Mapped[str] = mapped_column(String(8))
    priority: Mapped[int] = mapped_column(SmallInteger)  # messages.PRIORITY_ORDER
    reference: Mapped[str | None] = mapped_column(String(128))
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    status: Mapped[str] = mapped_column(String(16))
    rank: Mapped[int] = mapped_column(SmallInteger)  # messages.RANK[status]
    provider_message_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    provider_name: Mapped[str | None] = mapped_column(String(32))
    provider_status: Mapped[str | None] = mapped_column(String(64))
    provider_description: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    next_attempt_at: Mapped[dt.datetime | None]  # due time while queued
    lease_until: Mapped[dt.datetime | None]  # while sending
    send_at: Mapped[dt.datetime | None]
    expires_at: Mapped[dt.datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    submitted_at: Mapped[dt.datetime | None]  # first handed to the provider
    accepted_at: Mapped[dt.datetime | None]  # the provider answered 200
    final_at: Mapped[dt.datetime | None]
    redacted_at: Mapped[dt.datetime | None]  # the body was removed (retention, erasure)
    pseudonymised_at: Mapped[dt.datetime | None]  # the number was replaced by its hash

    __table_args__ = (
        # The dispatcher's claim (outbox.claim_due): the lane (status, priority),
        # then one client's oldest due message in it.
        Index("ix_messages_claim", "status", "priority", "client", "next_attempt_at"),
        # The lists (queries): newest first on (created_at, id), so a page starts
        # with an index range on the row value, also inside a batch's one timestamp.
        Index("ix_messages_contact_created", "contact", "created_at", "id"),
        Index("ix_messages_client_created", "client", "created_at", "id"),
        Index("ix_messages_status_created", "status", "created_at", "id"),
        Index("ix_messages_created", "created_at", "id"),
        Index("ix_messages_reference", "reference"),
        # The overdue count (queries.overdue_condition), as the dashboard polls it (#16):
        # pending rows only, with every column of its test, so no row is read.
        Index(
            "ix_messages_pending_since",
            "accepted_at",
            "submitted_at",
            "created_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        # The queue snapshot (queries.queue_snapshot), as the dashboard polls it (#16):
        # queued and sending rows only, every column it reads, so no row is read (0008).
        Index(
            "ix_messages_queue",
            "status",
            "next_attempt_at",
            "expires_at",
            "submitted_at",
            "lease_until",
            "client",
            postgresql_where=text("status IN ('queued', 'sending')"),
            sqlite_where=text("status IN ('queued', 'sending')"),
        ),
        # Privacy (#17): a pseudonymised number is found by its hash; the retention
        # job finds each client's final rows still to redact, pseudonymise or delete
        # oldest first, and a done row leaves the first two indexes.
        Index(
            "ix_messages_contact_pseudonym",
            "contact_pseudonym",
            postgresql_where=text("contact_pseudonym IS NOT NULL"),
            sqlite_where=text("contact_pseudonym IS NOT NULL"),
        ),
        *(
            Index(
                f"ix_messages_{name}",
                "client",
                "final_at",
                postgresql_where=text(condition),
                sqlite_where=text(condition),
            )
            for name, condition in RETENTION_INDEXES.items()
        ),
    )


class MessageEvent(Base):
    """Append-only history: who said what about a message, and when."""

    __tablename__ = "message_events"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    message_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("messages.id", ondelete="CASCADE")
    )
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))  # None: recorded, no move
    source: Mapped[str] = mapped_column(String(16))  # api, dispatcher, provider, callback
    detail: Mapped[str | None] = mapped_column(Text)
    # A dispatch attempt's outcome (outbox.Outcome); None on every other event.
    outcome: Mapped[str | None] = mapped_column(String(24))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_message_events_message_id", "message_id", "id"),
        Index("ix_message_events_created", "created_at"),  # stats windows (queries)
    )


class CallbackReceipt(Base):
    """The raw body of every callback answered 200, deduplicated."""

    __tablename__ = "callback_receipts"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    message_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    body: Mapped[str] = mapped_column(Text)
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[dt.datetime]
    applied_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_callback_receipts_message_id", "message_id"),)


class Client(Base):
    """An internal app: it owns messages, keys, Idempotency-Keys and its limits.

    The name is the client's identity everywhere (``messages.client``), so it
    never changes; a limit of None is no limit.
    """

    __tablename__ = "clients"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    # A subset of TRACKER_SENDER_NAMES; None: all of them.
    sender_names: Mapped[list[str] | None] = mapped_column(JSON)
    default_sender: Mapped[str | None] = mapped_column(String(16))  # None: the first allowed
    rate_per_minute: Mapped[int | None]  # messages accepted in any 60 s
    daily_cap: Mapped[int | None]  # messages accepted per day (Africa/Nairobi)
    high_per_minute: Mapped[int | None]  # high-priority messages accepted in any 60 s
    weight: Mapped[int] = mapped_column(SmallInteger, default=1)  # share of each lane
    # Overrides of TRACKER_RETENTION_* (durations like "7d", or "keep"); None: the setting.
    retention_body: Mapped[str | None] = mapped_column(String(16))
    retention_contact: Mapped[str | None] = mapped_column(String(16))
    retention_message: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ApiKey(Base):
    """A credential of one client; a client holds several while a key rotates."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64))
    client: Mapped[str] = mapped_column(String(64), ForeignKey("clients.name"))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings
    scopes: Mapped[str] = mapped_column(String(64))  # comma-separated
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None]

    __table_args__ = (
        # One active key per name; a revoked key's name can be used again.
        Index(
            "uq_api_keys_active_name",
            "name",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
        Index("ix_api_keys_client", "client"),
    )


class DispatchTurn(Base):
    """A client's place in one lane's round robin (outbox.claim_due).

    Stride scheduling: each claim moves the client's ``pass_value`` on by
    1/weight, and the client with the lowest one goes next.
    """

    __tablename__ = "dispatch_turns"

    client: Mapped[str] = mapped_column(String(64), ForeignKey("clients.name"), primary_key=True)
    priority: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    pass_value: Mapped[float] = mapped_column(Double)


class DispatchLane(Base):
    """A lane's virtual time: the pass of its last claim.

    A client that comes back after a pause starts at this value, so it neither
    bursts on credit saved while idle nor waits behind the others' history.
    """

    __tablename__ = "dispatch_lanes"

    priority: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    virtual_time: Mapped[float] = mapped_column(Double)


class IdempotencyKey(Base):
    """A caller's Idempotency-Key and the answer it got, per client."""

    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    client: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(SmallInteger)
    response_body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]

    __table_args__ = (
        UniqueConstraint("client", "key"),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )


class ProviderToken(Base):
    """The KIMISMS access token, shared by every process of one account."""

    __tablename__ = "provider_tokens"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    access_token: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[dt.datetime]
    obtained_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WebhookEndpoint(Base):
    """Where a client wants its messages' status changes pushed (Standard Webhooks).

    ``secret`` signs every delivery; while a secret rotates, ``previous_secret``
    signs too until ``previous_secret_until``. Deliveries are made while
    ``disabled_at`` is None; ``failing_since`` starts at the first failure of an
    unbroken run of them (TRACKER_WEBHOOK_DISABLE_AFTER counts from it).
    """

    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    client: Mapped[str] = mapped_column(String(64), ForeignKey("clients.name"))
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(255))
    secret: Mapped[str] = mapped_column(String(128))
    previous_secret: Mapped[str | None] = mapped_column(String(128))
    previous_secret_until: Mapped[dt.datetime | None]
    disabled_at: Mapped[dt.datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(String(255))
    failing_since: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("ix_webhook_endpoints_client", "client"),)


class WebhookSubscription(Base):
    """One event type an endpoint receives (webhooks.events.MESSAGE_EVENTS)."""

    __tablename__ = "webhook_subscriptions"

    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), primary_key=True
    )
    event_type: Mapped[str] = mapped_column(String(32), primary_key=True)


class WebhookDelivery(Base):
    """One event for one endpoint: the webhooks' outbox row and its progress.

    A trigger on ``message_events`` writes one per subscribed endpoint in the very
    transaction of the status change (migration 0004), so no change lacks its
    delivery whichever code path made it. ``data`` is the message's columns at that
    moment (without its body) with ``previous_status``; ``sequence`` is the event's
    id, which only grows. ``event_id`` is the ``webhook-id``: the same on every
    attempt, and for one event the same at every endpoint.
    """

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    event_id: Mapped[str] = mapped_column(String(80))
    event_type: Mapped[str] = mapped_column(String(32))
    message_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("messages.id", ondelete="CASCADE")
    )
    sequence: Mapped[int | None] = mapped_column(BigInteger)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    occurred_at: Mapped[dt.datetime]
    status: Mapped[str] = mapped_column(String(16))  # pending, succeeded, failed
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    next_attempt_at: Mapped[dt.datetime | None]  # while pending
    lease_until: Mapped[dt.datetime | None]  # while an attempt is under way
    last_attempt_at: Mapped[dt.datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(SmallInteger)
    last_error: Mapped[str | None] = mapped_column(Text)
    completed_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "status", "id"),
        Index("ix_webhook_deliveries_message_id", "message_id"),
    )


class WebhookAttempt(Base):
    """One try of a delivery: when, what came back, how long it took."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"),
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
    )
    attempted_at: Mapped[dt.datetime]
    status_code: Mapped[int | None] = mapped_column(SmallInteger)
    latency_ms: Mapped[float] = mapped_column(Double)
    error: Mapped[str | None] = mapped_column(Text)
    response_excerpt: Mapped[str | None] = mapped_column(Text)  # the first 1 KiB

    __table_args__ = (Index("ix_webhook_attempts_delivery_id", "delivery_id", "id"),)


class MessageCount(Base):
    """Per client and hour (and day), how many messages have each fact, with units (#16).

    Facts (``kind``/``label``): ``status``/its status (by creation hour), ``ttd``/a
    time-to-delivery bin, ``failed_description`` and ``failed_network``, and
    ``provider``/``rate_limited`` or ``error`` (by the attempt's hour). Triggers
    (migration 0005) append ``MessageCountDelta`` rows in the transaction of every
    change; ``dashboard.counts.fold`` adds them in here; readers sum both.
    """

    __tablename__ = "message_counts"

    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    span: Mapped[str] = mapped_column(String(4), primary_key=True)  # 'hour' or 'day'
    starts_at: Mapped[dt.datetime] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(24), primary_key=True)
    label: Mapped[str] = mapped_column(String(255), primary_key=True)
    messages: Mapped[int] = mapped_column(BigInteger)
    units: Mapped[int] = mapped_column(BigInteger)  # segments the provider took (status rows)


class MessageCountDelta(Base):
    """One change to a ``MessageCount`` not yet folded in (insert-only: no row locks)."""

    __tablename__ = "message_count_deltas"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    client: Mapped[str] = mapped_column(String(64))
    hour: Mapped[dt.datetime]
    kind: Mapped[str] = mapped_column(String(24))
    label: Mapped[str] = mapped_column(String(255))
    messages: Mapped[int] = mapped_column(BigInteger)
    units: Mapped[int] = mapped_column(BigInteger)


class OptOut(Base):
    """A number that must not be messaged: by one client, or by any (``client`` None).

    The number is kept only as its pseudonym (``privacy.pseudonyms``).
    """

    __tablename__ = "opt_outs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    client: Mapped[str | None] = mapped_column(String(64), ForeignKey("clients.name"))
    contact_pseudonym: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(64))  # the key's client that asked
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        # One entry per number and scope; NULL is not equal to NULL in a unique
        # index, so the global entries have an index of their own.
        Index(
            "uq_opt_outs_client_contact",
            "client",
            "contact_pseudonym",
            unique=True,
            sqlite_where=text("client IS NOT NULL"),
            postgresql_where=text("client IS NOT NULL"),
        ),
        Index(
            "uq_opt_outs_global_contact",
            "contact_pseudonym",
            unique=True,
            sqlite_where=text("client IS NULL"),
            postgresql_where=text("client IS NULL"),
        ),
    )


class AuditEvent(Base):
    """Who did what to personal data, when, and to how many rows (#17).

    Erasures, body reads and retention runs. Never holds a number or a body:
    ``detail`` holds counts, and ``message_id`` a read message's id (no foreign
    key: the audit outlives the message).
    """

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(String(32))  # privacy.audit.Action
    actor: Mapped[str] = mapped_column(String(160))  # "client/key name", or "retention"
    message_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_audit_events_created", "created_at", "id"),)


class DeletedMessageCount(Base):
    """Per client, day of creation and final status: messages the retention job deleted.

    Written in the deleting transaction, so ``/v1/stats`` still counts them (#17).
    """

    __tablename__ = "deleted_message_counts"

    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[dt.datetime] = mapped_column(primary_key=True)  # 00:00 UTC
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    messages: Mapped[int] = mapped_column(BigInteger)
    units: Mapped[int] = mapped_column(BigInteger)  # segments the provider took
