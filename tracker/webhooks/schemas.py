"""Webhook endpoints and deliveries as callers send and see them: one set of rules for
the API and ``tracker webhooks``.

Bodies are strict (a wrong type is an error, never coerced); errors are
``errors.ValidationFailed`` keyed by field in the API's words (``sending.schemas``
words pydantic's errors). The ``url`` is checked separately (``check_url``): it may
need a DNS lookup, done before any transaction opens.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tracker import errors, models
from tracker.sending import schemas as sending_schemas
from tracker.settings import Settings
from tracker.webhooks import destinations, endpoints, events, recovery

MAX_DESCRIPTION_CHARS = 255  # the column's size
# "2026-01-01T09:00:00 03:00": a '+' sent unencoded in a query string arrives as a space.
_LOST_PLUS = re.compile(r"(T[0-9:.]+) ([0-9]{2}:?[0-9]{2})$")
Model = TypeVar("Model", bound=BaseModel)
DeliveryStatus = Literal["pending", "succeeded", "failed"]


def _plain(value: str | None) -> str | None:
    """PostgreSQL refuses NUL in text: a 400 here, not a driver error later."""
    if value is not None and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


class EndpointChanges(BaseModel):
    """``PATCH /v1/webhooks/{id}``: the fields given change."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    url: str | None = Field(default=None, description="Checked again like a new one's")
    events: list[str] | None = Field(
        default=None,
        description="Message events to receive; null: all of them",
        examples=[["message.delivered", "message.failed"]],
    )
    description: str | None = Field(
        default=None, max_length=MAX_DESCRIPTION_CHARS, description="null clears it"
    )
    enabled: bool | None = Field(
        default=None, description="false stops deliveries; true resumes (clears the failure run)"
    )

    @field_validator("url", "description")
    @classmethod
    def no_nul(cls, value: str | None) -> str | None:
        return _plain(value)


class NewEndpoint(BaseModel):
    """``POST /v1/webhooks``: where to send, and which events (default: every one)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    url: str = Field(
        description="https (plain http only to an allowed loopback address)",
        examples=["https://billing.internal.example/hooks/sms"],
    )
    events: list[str] | None = Field(
        default=None, description="Message events to receive; default: all of them"
    )
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_CHARS)
    client: str | None = Field(
        default=None, description="Whose messages (admin keys only); default: the key's client"
    )

    @field_validator("url", "description", "client")
    @classmethod
    def no_nul(cls, value: str | None) -> str | None:
        return _plain(value)


class EndpointOut(BaseModel):
    """An endpoint; its secret is shown only when created and on rotate-secret."""

    id: uuid.UUID
    client: str
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    disabled_at: dt.datetime | None
    disabled_reason: str | None
    failing_since: dt.datetime | None = Field(description="Start of an unbroken run of failures")
    previous_secret_until: dt.datetime | None = Field(
        description="While in the future, the previous secret signs too"
    )
    created_at: dt.datetime
    updated_at: dt.datetime


class EndpointWithSecret(EndpointOut):
    secret: str = Field(description="whsec_...: verify signatures with it; shown only now")


class DeliveryCounts(BaseModel):
    pending: int = Field(description="The backlog: deliveries still to be made")
    failed: int
    last_attempt_at: dt.datetime | None
    last_status_code: int | None
    last_error: str | None


class EndpointDetail(EndpointOut):
    deliveries: DeliveryCounts


class EndpointList(BaseModel):
    webhooks: list[EndpointOut]


class AttemptOut(BaseModel):
    attempted_at: dt.datetime
    status_code: int | None
    latency_ms: float
    error: str | None
    response_excerpt: str | None = Field(description="The first 1 KiB of the answer")


class DeliveryOut(BaseModel):
    id: int
    event_id: str = Field(description="The webhook-id header: the same on every attempt")
    event_type: str
    message_id: uuid.UUID | None
    status: DeliveryStatus
    attempts: int = Field(description="Attempts since its schedule (re)started")
    next_attempt_at: dt.datetime | None
    created_at: dt.datetime
    completed_at: dt.datetime | None
    last_status_code: int | None
    last_error: str | None


class DeliveryWithAttempts(DeliveryOut):
    attempt_history: list[AttemptOut] = Field(description="Every attempt, oldest first")


class DeliveryPage(BaseModel):
    """Newest first; ``next_cursor`` is null on the last page."""

    deliveries: list[DeliveryWithAttempts]
    next_cursor: str | None


class Recovered(BaseModel):
    recovered: int = Field(description="Failed deliveries made pending again")


class ListParams(BaseModel):
    """The query string of ``GET /v1/webhooks``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client: str | None = Field(default=None, description="A client's (admin; others: their own)")

    @field_validator("client")
    @classmethod
    def no_nul(cls, value: str | None) -> str | None:
        return _plain(value)


class DeliveriesParams(BaseModel):
    """The query string of ``GET /v1/webhooks/{id}/deliveries``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: DeliveryStatus | None = None
    limit: int = Field(default=recovery.DEFAULT_LIMIT, ge=1, le=recovery.MAX_LIMIT, strict=False)
    cursor: str | None = Field(default=None, description="next_cursor of the previous page")

    @field_validator("cursor")
    @classmethod
    def no_nul(cls, value: str | None) -> str | None:
        return _plain(value)


class RecoverParams(BaseModel):
    """The query string of ``POST /v1/webhooks/{id}/recover``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    since: sending_schemas.Timestamp = Field(
        description="ISO 8601 with an offset: failed deliveries created since then",
        examples=[sending_schemas.DATETIME_EXAMPLE],
    )

    @field_validator("since", mode="before")
    @classmethod
    def restore_plus(cls, value: Any) -> Any:
        return _LOST_PLUS.sub(r"\1+\2", value) if isinstance(value, str) else value


# --- parsing -----------------------------------------------------------------


def validated(model: type[Model], data: Mapping[str, Any]) -> Model:
    """``data`` as ``model``, or ValidationFailed keyed by field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise errors.ValidationFailed(sending_schemas.field_errors(exc)) from None


def subscription(names: Sequence[str] | None) -> tuple[events.EventType, ...]:
    """The events named (None: all), or a 400 on ``events`` naming the bad one."""
    try:
        return events.parse_subscription(names)
    except ValueError as exc:
        raise errors.ValidationFailed({"events": [str(exc)]}) from None


async def check_url(url: str, settings: Settings) -> str:
    """The URL as it will be requested, or a 400 on ``url`` saying what is refused."""
    try:
        destination = await destinations.check_url(url, settings.webhook_allowed_networks)
    except ValueError as exc:
        raise errors.ValidationFailed({"url": [str(exc)]}) from None
    return destination.url


def changes_of(given: EndpointChanges, url: str | None) -> endpoints.Changes:
    """The record's changes from a checked PATCH body (``url`` already vetted)."""
    fields = given.model_fields_set
    if "enabled" in fields and given.enabled is None:
        raise errors.ValidationFailed({"enabled": ["must be true or false"]})
    if "url" in fields and given.url is None:
        raise errors.ValidationFailed({"url": ["an endpoint needs a URL; it cannot be null"]})
    return endpoints.Changes(
        url=url,
        subscription=subscription(given.events) if "events" in fields else None,
        description_given="description" in fields,
        description=given.description,
        enabled=given.enabled,
    )


# --- rendering ---------------------------------------------------------------


def endpoint_out(endpoint: endpoints.Endpoint) -> dict[str, Any]:
    """The endpoint without its secret."""
    return EndpointOut(
        id=endpoint.id,
        client=endpoint.client,
        url=endpoint.url,
        events=[e.value for e in endpoint.events],
        description=endpoint.description,
        enabled=endpoint.enabled,
        disabled_at=endpoint.disabled_at,
        disabled_reason=endpoint.disabled_reason,
        failing_since=endpoint.failing_since,
        previous_secret_until=endpoint.previous_secret_until,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
    ).model_dump(mode="json")


def with_secret(endpoint: endpoints.Endpoint) -> dict[str, Any]:
    """The endpoint and its current secret: only on create and rotate-secret."""
    return {**endpoint_out(endpoint), "secret": endpoint.secret}


def detail_out(endpoint: endpoints.Endpoint, counts: recovery.Overview) -> dict[str, Any]:
    found = DeliveryCounts(
        pending=counts.pending,
        failed=counts.failed,
        last_attempt_at=counts.last_attempt_at,
        last_status_code=counts.last_status_code,
        last_error=counts.last_error,
    )
    return {**endpoint_out(endpoint), "deliveries": found.model_dump(mode="json")}


def delivery_out(delivery: models.WebhookDelivery) -> dict[str, Any]:
    return DeliveryOut.model_validate(delivery, from_attributes=True).model_dump(mode="json")


def attempt_out(attempt: models.WebhookAttempt) -> dict[str, Any]:
    return AttemptOut.model_validate(attempt, from_attributes=True).model_dump(mode="json")


def page_out(page: recovery.Page) -> dict[str, Any]:
    return {
        "deliveries": [
            {
                **delivery_out(delivery),
                "attempt_history": [attempt_out(a) for a in recovery.attempts_of(page, delivery)],
            }
            for delivery in page.deliveries
        ],
        "next_cursor": page.next_cursor,
    }
