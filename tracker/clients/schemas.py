"""A client's settings as callers give them: one set of rules for the CLI and the API.

The models check shapes and ranges (strict: a wrong type is an error, never
coerced); ``check`` adds the rules that need the settings (senders must be on
``TRACKER_SENDER_NAMES``, the default among the client's senders). Errors are
``errors.ValidationFailed`` keyed by field, in the API's words; the CLI renames
the fields to its options.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from tracker import errors
from tracker.clients import records
from tracker.domain import durations
from tracker.settings import Settings

MAX_WEIGHT = 100
MAX_LIMIT = 10_000_000  # a limit above it is a typo, not a policy (and fits any integer column)
SENDERS = "sender_names"
DEFAULT_SENDER = "default_sender"
LIMITS = ("rate_per_minute", "daily_cap", "high_per_minute")

Model = TypeVar("Model", bound=BaseModel)
Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT)]
Weight = Annotated[int, Field(ge=1, le=MAX_WEIGHT)]
Senders = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]


def _period(text: str) -> str:
    """A retention override as stored: the shortest form of its period, or ``keep``."""
    return durations.format_period(durations.parse_period(text))


Period = Annotated[str, Field(max_length=16), AfterValidator(_period)]
PERIOD_EXAMPLES = ["7d", "24h", "keep"]


class ClientChanges(BaseModel):
    """``PATCH /v1/clients/{name}``: the fields given change; ``null`` clears a limit."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    sender_names: Senders | None = Field(
        default=None,
        description="A subset of TRACKER_SENDER_NAMES; null: all of them",
        examples=[["KIMISMS"]],
    )
    default_sender: str | None = Field(
        default=None, description="One of the client's senders; null: the first of them"
    )
    rate_per_minute: Limit | None = Field(
        default=None, description="Messages accepted in any 60 s; null: no limit"
    )
    daily_cap: Limit | None = Field(
        default=None, description="Messages accepted per day; null: no limit"
    )
    high_per_minute: Limit | None = Field(
        default=None, description="high-priority messages accepted in any 60 s; null: no limit"
    )
    weight: Weight | None = Field(
        default=None, description="Its share of each dispatch lane, 1-100; it cannot be null"
    )
    retention_body: Period | None = Field(
        default=None,
        description="How long after a message is final its body is kept ('7d', 'keep'); "
        "null: TRACKER_RETENTION_BODY",
        examples=PERIOD_EXAMPLES,
    )
    retention_contact: Period | None = Field(
        default=None,
        description="How long after a message is final its number is kept before it is "
        "replaced by a keyed hash; null: TRACKER_RETENTION_CONTACT",
        examples=PERIOD_EXAMPLES,
    )
    retention_message: Period | None = Field(
        default=None,
        description="How long after a message is final it is kept at all; "
        "null: TRACKER_RETENTION_MESSAGE",
        examples=PERIOD_EXAMPLES,
    )


class NewClient(ClientChanges):
    """``POST /v1/clients``: a name, and any settings (no limits by default)."""

    weight: Weight = Field(
        default=records.DEFAULT_WEIGHT, description="Its share of each dispatch lane"
    )

    name: str = Field(
        min_length=1,
        max_length=records.MAX_NAME_LENGTH,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Letters, digits, '-' or '_'; it never changes",
        examples=["billing"],
    )


class ClientOut(BaseModel):
    """A client and its settings; a limit of null is no limit."""

    name: str
    sender_names: list[str] | None = Field(description="null: all of TRACKER_SENDER_NAMES")
    default_sender: str | None = Field(description="null: the first of its senders")
    rate_per_minute: int | None
    daily_cap: int | None
    high_per_minute: int | None
    weight: int
    created_at: dt.datetime | None
    retention_body: str | None = Field(description="null: TRACKER_RETENTION_BODY")
    retention_contact: str | None = Field(description="null: TRACKER_RETENTION_CONTACT")
    retention_message: str | None = Field(description="null: TRACKER_RETENTION_MESSAGE")
    active_keys: int = Field(description="Keys not revoked")


class ClientList(BaseModel):
    clients: list[ClientOut]


class KeyOut(BaseModel):
    """One of a client's API keys (never the key itself)."""

    name: str
    prefix: str
    scopes: list[str]
    created_at: dt.datetime
    revoked: bool


class ClientDetail(ClientOut):
    keys: list[KeyOut]


def parse_new(data: Mapping[str, Any], settings: Settings) -> tuple[str, dict[str, Any]]:
    """A new client's name and settings, or ValidationFailed by field."""
    new = _validated(NewClient, data)
    values = _given(new, exclude={"name"})
    check(records.Client(new.name), values, settings)
    return new.name, values


def parse_changes(
    data: Mapping[str, Any], current: records.Client, settings: Settings
) -> dict[str, Any]:
    """The fields to change on ``current``, or ValidationFailed by field."""
    changes = _given(_validated(ClientChanges, data))
    check(current, changes, settings)
    return changes


def check(current: records.Client, changes: Mapping[str, Any], settings: Settings) -> None:
    """The rules that need the settings, on the client as ``changes`` would leave it.

    Only what changes is checked against TRACKER_SENDER_NAMES: a client set up
    before a sender left the list can still change its limits.
    """
    problems: dict[str, list[str]] = {}
    if "weight" in changes and changes["weight"] is None:
        problems["weight"] = [f"must be an integer from 1 to {MAX_WEIGHT}; it cannot be cleared"]
    replaced: dict[str, Any] = {
        k: tuple(v) if k == SENDERS and v else v for k, v in changes.items()
    }
    after = dataclasses.replace(current, **replaced)
    allowed = settings.sender_names
    senders = after.sender_names if after.sender_names is not None else allowed
    if changes.get(SENDERS):
        unknown = [name for name in changes[SENDERS] if name not in allowed]
        if unknown:
            listed = ", ".join(map(errors.echo, unknown))
            problems[SENDERS] = [f"{listed} not in TRACKER_SENDER_NAMES ({', '.join(allowed)})"]
        elif len(set(changes[SENDERS])) != len(changes[SENDERS]):
            problems[SENDERS] = ["must not repeat a name"]
    if (SENDERS in changes or DEFAULT_SENDER in changes) and (
        after.default_sender is not None and after.default_sender not in senders
    ):
        named = errors.echo(after.default_sender)
        problems[DEFAULT_SENDER] = [f"{named} is not one of its senders ({', '.join(senders)})"]
    if problems:
        raise errors.ValidationFailed(problems)


def client_out(client: records.Client, active_keys: int) -> dict[str, Any]:
    values = dataclasses.asdict(client)
    if client.sender_names is not None:
        values[SENDERS] = list(client.sender_names)
    return ClientOut(**values, active_keys=active_keys).model_dump(mode="json")


def _given(model: BaseModel, exclude: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """The fields the caller gave (a null included: it clears)."""
    return {name: getattr(model, name) for name in model.model_fields_set - set(exclude)}


def _validated(model: type[Model], data: Mapping[str, Any]) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise errors.ValidationFailed(field_errors(exc)) from None


# pydantic's error types in the API's words (as sending.schemas words its own).
_MESSAGES = {
    "missing": "this field is required",
    "extra_forbidden": "unknown field",
    "string_type": "must be a string",
    "string_unicode": "must be valid Unicode text",
    "string_pattern_mismatch": "must be letters, digits, '-' or '_'",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "list_type": "must be a list of names",
    "model_type": "must be a JSON object",
}
_WITH_CONTEXT = {
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most {max_length} characters",
    "too_short": "must hold at least {min_length} name",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
}


def field_errors(exc: ValidationError) -> dict[str, list[str]]:
    """``{"sender_names[1]": ["must be a string"]}``; the whole body is ``body``."""
    found: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False, include_input=False):
        found.setdefault(errors.field_path(error["loc"]), []).append(_describe(error))
    return found


def _describe(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind in _WITH_CONTEXT:
        try:
            return _WITH_CONTEXT[kind].format_map(error.get("ctx") or {})
        except KeyError:  # a pydantic release without that context: its own words
            pass
    message: str = error["msg"]
    return _MESSAGES.get(kind, message.removeprefix("Value error, "))
