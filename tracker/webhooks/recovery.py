"""What operators do with deliveries: list them with their attempts, retry, recover, test.

Each function makes rows ``pending`` and due now; the deliverer sends them. Within
the transaction each also does ``wakeup.notify`` (PostgreSQL wakes every process's
deliverer at commit); after the commit the caller rings the in-process doorbell.
Lists are newest first with keyset pages on the delivery's id (ids only grow).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import clock, errors, models, wakeup
from tracker.webhooks import endpoints, events, signing

PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"
STATUSES = (PENDING, SUCCEEDED, FAILED)
DISABLED_ERROR = "endpoint disabled"  # as the outbox trigger words it
TEST_NOTE = "a test event from tracker webhooks test"
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_DELIVERY_ID = 2**63 - 1  # past a BIGINT: no such delivery, never a driver error
CURSOR_PREFIX = "d"

Delivery = models.WebhookDelivery
Attempt = models.WebhookAttempt


@dataclass(frozen=True)
class Page:
    """Deliveries newest first, each with its attempts oldest first."""

    deliveries: list[models.WebhookDelivery]
    attempts: dict[int, list[models.WebhookAttempt]]
    next_cursor: str | None


@dataclass(frozen=True)
class Overview:
    """An endpoint's numbers for operators."""

    pending: int
    failed: int
    last_attempt_at: dt.datetime | None
    last_status_code: int | None
    last_error: str | None


def encode_cursor(delivery_id: int) -> str:
    raw = f"{CURSOR_PREFIX}{delivery_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> int:
    """The id a page handed out; anything else is a 400 on ``cursor``."""
    refused = errors.ValidationFailed({"cursor": ["is not a cursor this API handed out"]})
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (ValueError, binascii.Error):
        raise refused from None
    digits = raw.removeprefix(CURSOR_PREFIX)
    if not raw.startswith(CURSOR_PREFIX) or not digits.isdecimal() or not digits.isascii():
        raise refused
    if int(digits) > MAX_DELIVERY_ID:
        raise refused
    return int(digits)


async def deliveries(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    *,
    status: str | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page:
    """One page of the endpoint's deliveries (of one ``status``), with their attempts."""
    query = select(Delivery).where(Delivery.endpoint_id == endpoint_id)
    if status is not None:
        query = query.where(Delivery.status == status)
    if cursor is not None:
        query = query.where(Delivery.id < decode_cursor(cursor))
    found = list(await session.scalars(query.order_by(Delivery.id.desc()).limit(limit + 1)))
    page, more = found[:limit], len(found) > limit
    attempts: dict[int, list[models.WebhookAttempt]] = {d.id: [] for d in page}
    if page:
        rows = await session.scalars(
            select(Attempt).where(Attempt.delivery_id.in_(list(attempts))).order_by(Attempt.id)
        )
        for attempt in rows:
            attempts[attempt.delivery_id].append(attempt)
    next_cursor = encode_cursor(page[-1].id) if more else None
    return Page(deliveries=page, attempts=attempts, next_cursor=next_cursor)


async def overview(session: AsyncSession, endpoint_id: uuid.UUID) -> Overview:
    """Pending backlog, failed deliveries and the last attempt made."""
    rows = await session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.endpoint_id == endpoint_id)
        .group_by(Delivery.status)
    )
    counts: dict[str, int] = dict(rows.all())
    last = await session.scalar(
        select(Attempt)
        .join(Delivery, Delivery.id == Attempt.delivery_id)
        .where(Delivery.endpoint_id == endpoint_id)
        .order_by(Attempt.attempted_at.desc(), Attempt.id.desc())
        .limit(1)
    )
    return Overview(
        pending=counts.get(PENDING, 0),
        failed=counts.get(FAILED, 0),
        last_attempt_at=None if last is None else last.attempted_at,
        last_status_code=None if last is None else last.status_code,
        last_error=None if last is None else last.error,
    )


async def get_delivery(
    session: AsyncSession, delivery_id: int, *, client: str | None = None
) -> tuple[models.WebhookDelivery, endpoints.Endpoint] | None:
    """The delivery and its endpoint, or None (none such, or not ``client``'s)."""
    if not 0 < delivery_id <= MAX_DELIVERY_ID:
        return None
    found = await session.get(Delivery, delivery_id)
    if found is None:
        return None
    endpoint = await endpoints.get(session, found.endpoint_id, client=client)
    return None if endpoint is None else (found, endpoint)


def _requeued(now: dt.datetime) -> dict[str, object]:
    """A delivery's schedule restarted: due now, no attempt counted (the history stays)."""
    return {
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "lease_until": None,
        "completed_at": None,
    }


def require_enabled(endpoint: endpoints.Endpoint) -> None:
    """A disabled endpoint gets nothing: 409, so the caller enables it first."""
    if not endpoint.enabled:
        raise errors.Conflict(
            f"webhook endpoint {endpoint.id} is disabled ({endpoint.disabled_reason}): "
            'enable it first (PATCH {"enabled": true} or tracker webhooks update --enable)'
        )


async def retry(
    session: AsyncSession, delivery_id: int, now: dt.datetime, *, client: str | None = None
) -> models.WebhookDelivery:
    """A failed or succeeded delivery sent again, its schedule restarted; 409 while pending."""
    found = await get_delivery(session, delivery_id, client=client)
    if found is None:
        raise errors.NotFound(f"no webhook delivery {delivery_id}")
    delivery, endpoint = found
    require_enabled(endpoint)
    result = await session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status != PENDING)
        .values(**_requeued(now))
    )
    if not getattr(result, "rowcount", 0):  # pending, or made pending since it was read
        raise errors.Conflict(f"webhook delivery {delivery_id} is pending: it will be sent")
    await wakeup.notify(session, wakeup.WEBHOOKS_CHANNEL)
    await session.refresh(delivery)
    return delivery


async def recover(
    session: AsyncSession, endpoint: endpoints.Endpoint, since: dt.datetime, now: dt.datetime
) -> int:
    """Every failed delivery of ``endpoint`` created since ``since`` back to pending."""
    require_enabled(endpoint)
    result = await session.execute(
        update(Delivery)
        .where(
            Delivery.endpoint_id == endpoint.id,
            Delivery.status == FAILED,
            Delivery.created_at >= since,
        )
        .values(**_requeued(now))
    )
    recovered = int(getattr(result, "rowcount", 0))
    if recovered:
        await wakeup.notify(session, wakeup.WEBHOOKS_CHANNEL)
    return recovered


async def queue_test(
    session: AsyncSession, endpoint: endpoints.Endpoint, now: dt.datetime
) -> models.WebhookDelivery:
    """One ``webhook.test`` delivery to ``endpoint``, due now (no message behind it)."""
    require_enabled(endpoint)
    delivery = Delivery(
        endpoint_id=endpoint.id,
        event_id=signing.new_message_id(),
        event_type=events.EventType.WEBHOOK_TEST.value,
        message_id=None,
        sequence=None,
        data={"endpoint_id": str(endpoint.id), "note": TEST_NOTE},
        occurred_at=now,
        status=PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(delivery)
    await session.flush()
    await wakeup.notify(session, wakeup.WEBHOOKS_CHANNEL)
    return delivery


async def change_endpoint(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    changes: endpoints.Changes,
    *,
    client: str | None = None,
) -> endpoints.Endpoint:
    """Change the endpoint (404 if not ``client``'s); disabling fails its backlog."""
    now = clock.utcnow()
    current = await endpoints.get(session, endpoint_id, client=client, for_update=True)
    if current is None:
        raise errors.NotFound(f"no webhook endpoint {endpoint_id}")
    changed = await endpoints.change(session, current, changes, now)
    if current.enabled and not changed.enabled:
        await fail_pending(session, endpoint_id, now)
    return changed


async def fail_pending(session: AsyncSession, endpoint_id: uuid.UUID, now: dt.datetime) -> int:
    """On disabling: its pending deliveries not under way become failed, as the outbox
    trigger writes a disabled endpoint's, so ``recover`` brings them back later. One an
    attempt holds (an unexpired lease) is left for the deliverer to record."""
    free = Delivery.lease_until.is_(None) | (Delivery.lease_until < now)
    result = await session.execute(
        update(Delivery)
        .where(Delivery.endpoint_id == endpoint_id, Delivery.status == PENDING, free)
        .values(status=FAILED, next_attempt_at=None, last_error=DISABLED_ERROR, completed_at=now)
    )
    return int(getattr(result, "rowcount", 0))


async def delivery_status(session: AsyncSession, delivery_id: int) -> models.WebhookDelivery | None:
    """The delivery as it is now (``tracker webhooks test`` polls it)."""
    return await session.scalar(
        select(Delivery).where(Delivery.id == delivery_id).execution_options(populate_existing=True)
    )


def attempts_of(page: Page, delivery: models.WebhookDelivery) -> Sequence[models.WebhookAttempt]:
    return page.attempts.get(delivery.id, [])
