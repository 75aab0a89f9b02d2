"""Routes for operators: the message list, statistics, Prometheus metrics, OpenAPI.

Query strings are validated by pydantic models (the same ones ``openapi``
documents); errors have the usual 400 shape keyed by parameter. A key sees its
own client's messages; ``admin`` sees every client's and may filter by client.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, ClassVar, TypeVar

import pydantic_core
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tracker import auth, clock, errors, logs
from tracker.clients import quotas, records
from tracker.domain import recipients, status
from tracker.ops import gauges, queries
from tracker.privacy import pseudonyms
from tracker.sending import api, schemas
from tracker.services import services_of

Status = status.Status  # fields and options named ``status`` shadow the module

log = logs.get_logger(__name__)
Params = TypeVar("Params", bound=BaseModel)
# "2026-01-01T09:00:00 03:00": a '+' sent unencoded in a query string arrives as a space.
_LOST_PLUS = re.compile(r"(T[0-9:.]+) ([0-9]{2}:?[0-9]{2})$")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DIGITS = re.compile(r"[0-9]+")


def _decimal_digits(value: Any) -> Any:
    """ASCII digits only: pydantic alone reads ``1.0``, ``5_0`` and `` 5 `` as 5."""
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise PydanticCustomError("int_parsing", "must be an integer")
    return value


QueryInt = Annotated[int, BeforeValidator(_decimal_digits)]


def _text(value: str | None) -> str | None:
    if value is not None and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


class ListParams(BaseModel):
    """The query string of ``GET /v1/messages``; every filter is ANDed."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    repeatable: ClassVar[frozenset[str]] = frozenset({"status"})

    status: list[Status] = Field(
        default_factory=list, description="Repeat for several: status=failed&status=rejected"
    )
    to: str | None = Field(default=None, description="The recipient, in any accepted form")
    reference: str | None = Field(default=None, description="The caller's own id")
    sender_name: str | None = None
    client: str | None = Field(default=None, description="A client's name (others: only their own)")
    provider_message_id: str | None = None
    created_after: schemas.Timestamp | None = Field(default=None, description="Exclusive")
    created_before: schemas.Timestamp | None = Field(default=None, description="Exclusive")
    overdue: bool | None = Field(
        default=None, description="Pending without a delivery report for too long"
    )
    limit: QueryInt = Field(default=queries.DEFAULT_LIMIT, ge=1, le=queries.MAX_LIMIT)
    cursor: str | None = Field(default=None, description="next_cursor of the previous page")

    @field_validator("created_after", "created_before", mode="before")
    @classmethod
    def iso_date_time(cls, value: Any) -> Any:
        """ISO 8601 only (pydantic would read "1700000000" as a Unix time)."""
        if isinstance(value, str):
            if not _ISO_DATE.match(value):
                raise ValueError(f"must be an ISO 8601 date-time, e.g. {schemas.DATETIME_EXAMPLE}")
            return _LOST_PLUS.sub(r"\1+\2", value)
        return value

    @field_validator("created_after", "created_before")
    @classmethod
    def to_utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        return clock.to_utc(value)

    @field_validator("to", "reference", "sender_name", "client", "provider_message_id", "cursor")
    @classmethod
    def plain_text(cls, value: str | None) -> str | None:
        return _text(value)

    @field_validator("to")
    @classmethod
    def normalise_to(cls, value: str | None) -> str | None:
        return None if value is None else recipients.normalise_recipient(value).msisdn


class StatsParams(BaseModel):
    """The query string of ``GET /v1/stats``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    repeatable: ClassVar[frozenset[str]] = frozenset()

    window: str = Field(default="24h", description="15m, 24h, 7d, or seconds", examples=["24h"])
    client: str | None = Field(default=None, description="One client's numbers (admin)")

    @field_validator("client")
    @classmethod
    def plain_text(cls, value: str | None) -> str | None:
        return _text(value)


class MessageListItem(schemas.MessageOut):
    overdue: bool = Field(description="Pending without a delivery report for too long")


class MessageList(BaseModel):
    """One page, newest first; ``next_cursor`` is null on the last page."""

    messages: list[MessageListItem]
    next_cursor: str | None


class StatsQueue(BaseModel):
    depth: int = Field(description="Queued or awaiting a retry, and due now")
    scheduled: int = Field(description="Queued with a send_at still ahead")
    oldest_queued_age_seconds: float | None
    drain_seconds: float = Field(description="depth at TRACKER_RATE_LIMIT_PER_MINUTE")


class StatsTimeToDelivery(BaseModel):
    count: int = Field(description="Delivered messages measured")
    p50: float | None
    p95: float | None
    p99: float | None


class StatsProvider(BaseModel):
    rate_limited: int = Field(description="429 answers in the window")
    errors: int = Field(description="Other failed calls in the window: 5xx, timeouts, ...")


class QuotaCount(BaseModel):
    limit: int | None = Field(description="null: no limit")
    used: int = Field(description="Messages counted against it now")


class DailyQuotaCount(QuotaCount):
    resets_at: dt.datetime = Field(description="The next midnight in Africa/Nairobi")


class StatsQuota(BaseModel):
    """One client's admission counts against its limits, as of now (not windowed)."""

    client: str
    rate_per_minute: QuotaCount = Field(description="Accepted in the last 60 s")
    daily_cap: DailyQuotaCount = Field(description="Accepted today (Africa/Nairobi)")
    high_per_minute: QuotaCount = Field(description="High priority accepted in the last 60 s")


class StatsOut(BaseModel):
    """Messages created in the window, and the queue and overdue count as of now."""

    since: dt.datetime
    until: dt.datetime
    window_seconds: int
    client: str | None
    total: int
    counts: dict[str, int] = Field(description="Every status, zeros included")
    delivery_rate: float | None = Field(description="delivered / (delivered + failed)")
    units_billed: int = Field(description="Parts of the messages KIMISMS accepted")
    time_to_delivery_seconds: StatsTimeToDelivery
    overdue: int
    queue: StatsQueue
    provider: StatsProvider
    quota: StatsQuota | None = Field(
        description="The client's counts against its limits; null over every client (admin)"
    )


# --- parameters --------------------------------------------------------------


def parse_params(model: type[Params], request: Request) -> Params:
    """The query string as ``model``; a repeated single-valued parameter is a 400."""
    repeatable: frozenset[str] = getattr(model, "repeatable", frozenset())
    data: dict[str, Any] = {}
    problems: dict[str, list[str]] = {}
    for name in request.query_params:
        values = request.query_params.getlist(name)
        if name in repeatable:
            data[name] = values
        elif len(values) > 1:
            problems[name] = ["must be given once"]
        else:
            data[name] = values[0]
    if problems:
        raise errors.ValidationFailed(problems)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise errors.ValidationFailed(_query_errors(exc)) from None


_QUERY_MESSAGES = {
    "extra_forbidden": "unknown parameter",
    "bool_parsing": "must be true or false",
    "int_parsing": "must be an integer",
    "greater_than_equal": "must be at least {ge}",
}


def _query_errors(exc: ValidationError) -> dict[str, list[str]]:
    """Keyed by parameter name (``status``, not ``status[0]``), in the API's words."""
    found: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False, include_input=False):
        wording = _QUERY_MESSAGES.get(error["type"])
        message = wording.format_map(error.get("ctx") or {}) if wording else schemas.describe(error)
        found.setdefault(str(error["loc"][0]) if error["loc"] else "query", []).append(message)
    return found


def _visible_client(principal: auth.Principal, asked: str | None) -> str | None:
    """The client whose messages the caller sees: asked (admin), else its own."""
    if principal.allows(auth.Scope.ADMIN):
        return asked
    if asked is not None and asked != principal.client:
        raise HTTPException(403, "this key may only see its own client's messages")
    return principal.client


def message_filter(
    params: ListParams, client: str | None, *, key: bytes | None = None
) -> queries.MessageFilter:
    """The list's parameters as the filter ``queries`` reads (the dashboard's too);
    with the pseudonym ``key``, ``to`` finds pseudonymised messages too."""
    pseudonym = None if params.to is None or key is None else pseudonyms.of(params.to, key)
    return queries.MessageFilter(
        statuses=tuple(params.status),
        contact=params.to,
        contact_pseudonym=pseudonym,
        reference=params.reference,
        sender_name=params.sender_name,
        client=client,
        provider_message_id=params.provider_message_id,
        created_after=params.created_after,
        created_before=params.created_before,
        overdue=params.overdue,
    )


# --- handlers ----------------------------------------------------------------


async def list_messages(request: Request) -> Response:
    """``GET /v1/messages``: one page of messages, newest first."""
    services = services_of(request)
    async with services.database.read() as session:  # one connection for key and reads
        principal = await auth.require(request, services.database, auth.Scope.READ, session=session)
        params = parse_params(ListParams, request)
        client = _visible_client(principal, params.client)
        cursor = queries.decode_cursor(params.cursor) if params.cursor else None
        cutoff = clock.utcnow() - dt.timedelta(seconds=services.settings.dlr_overdue_seconds)
        page = await queries.list_messages(
            session,
            message_filter(params, client, key=services.settings.pseudonym_key_bytes()),
            limit=params.limit,
            cursor=cursor,
            overdue_cutoff=cutoff,
        )
    items = [
        {**schemas.message_out(row), "overdue": queries.is_overdue(row, cutoff)}
        for row in page.rows
    ]
    body = {"messages": items, "next_cursor": page.next_cursor}
    return Response(pydantic_core.to_json(body), media_type="application/json")


async def messages_collection(request: Request) -> Response:
    """``/v1/messages``: GET lists, POST sends (``sending.api``); one route, so 405 is right."""
    if request.method == "POST":
        return await api.send_message(request)
    return await list_messages(request)


async def get_stats(request: Request) -> Response:
    """``GET /v1/stats?window=24h``."""
    services = services_of(request)
    principal = await auth.require(request, services.database, auth.Scope.READ)
    params = parse_params(StatsParams, request)
    window = queries.parse_window(params.window)
    client = _visible_client(principal, params.client)
    settings = services.settings
    now = clock.utcnow()
    async with services.database.read() as session:
        found = await queries.stats(
            session,
            window=window,
            now=now,
            overdue_after=dt.timedelta(seconds=settings.dlr_overdue_seconds),
            rate_per_minute=settings.rate_limit_per_minute,
            client=client,
        )
        policy = await _policy_of(session, principal, client)
        usage = None if policy is None else await quotas.usage(session, policy, now)
    body = stats_out(found, usage)
    return Response(body.model_dump_json(), media_type="application/json")


async def _policy_of(
    session: AsyncSession, principal: auth.Principal, client: str | None
) -> records.Client | None:
    """The limits of the client the stats are about (None: every client, or none such)."""
    if client is None:
        return None
    if client == principal.client:
        return principal.policy  # read with the key, as admission reads it
    return await records.get(session, client)


def quota_out(usage: quotas.Usage) -> StatsQuota:
    policy, counts = usage.policy, usage.counts
    return StatsQuota(
        client=policy.name,
        rate_per_minute=QuotaCount(limit=policy.rate_per_minute, used=counts.minute),
        daily_cap=DailyQuotaCount(
            limit=policy.daily_cap, used=counts.day, resets_at=usage.resets_at
        ),
        high_per_minute=QuotaCount(limit=policy.high_per_minute, used=counts.high_minute),
    )


def stats_out(found: queries.Stats, usage: quotas.Usage | None = None) -> StatsOut:
    ttd, queue = found.time_to_delivery, found.queue
    return StatsOut(
        since=found.since,
        until=found.until,
        window_seconds=round((found.until - found.since).total_seconds()),
        client=found.client,
        total=found.total,
        counts=found.counts,
        delivery_rate=found.delivery_rate,
        units_billed=found.units_billed,
        time_to_delivery_seconds=StatsTimeToDelivery(
            count=ttd.count, p50=ttd.p50, p95=ttd.p95, p99=ttd.p99
        ),
        overdue=found.overdue,
        queue=StatsQueue(
            depth=queue.depth,
            scheduled=queue.scheduled,
            oldest_queued_age_seconds=queue.oldest_queued_age_seconds,
            drain_seconds=queue.drain_seconds,
        ),
        provider=StatsProvider(
            rate_limited=found.provider_rate_limited, errors=found.provider_errors
        ),
        quota=None if usage is None else quota_out(usage),
    )


routes = [
    Route(api.SEND_ROUTE, messages_collection, methods=["GET", "POST"]),
    Route("/v1/stats", get_stats, methods=["GET"]),
    Route("/metrics", gauges.prometheus_metrics, methods=["GET"]),
]
