"""The one exception hierarchy of the tracker.

Callers catch these, never driver or HTTP-library types: the data layer and the
provider client translate at their boundary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# A caller's value quoted in an error is cut to this many characters.
MAX_ECHOED_CHARS = 32


class TrackerError(Exception):
    """Base of every error the tracker raises on purpose."""


class ConfigurationError(TrackerError):
    """A setting is missing or invalid; the message names the variable."""


WHOLE_BODY = "body"  # the error key for the request as a whole


def field_path(loc: Sequence[int | str]) -> str:
    """How a field is named in a 400: ``("messages", 3, "to")`` -> ``messages[3].to``;
    the whole body is ``body``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path or WHOLE_BODY


class ValidationFailed(TrackerError):
    """A caller's input broke a rule: field -> list of human-readable messages."""

    def __init__(self, errors: Mapping[str, Sequence[str]]) -> None:
        self.errors = {field: list(messages) for field, messages in errors.items()}
        super().__init__("; ".join(f"{f}: {', '.join(m)}" for f, m in self.errors.items()))


class InvalidRecipient(ValueError, TrackerError):
    """A phone number that is not a valid Kenyan mobile number."""


class MessageTooLong(ValueError, TrackerError):
    """A message body that would need more parts than allowed."""


class NotFound(TrackerError):
    """The thing asked for does not exist (or is not the caller's to see)."""


class Conflict(TrackerError):
    """The request contradicts the current state (e.g. cancel after sending)."""


class DatabaseUnavailable(TrackerError):
    """The database cannot serve now: unreachable, too slow, locked or shutting down.

    Raised by ``db.Database`` in place of the driver's error (kept as the cause);
    the API answers 503 with Retry-After. ``cause`` names the driver error's class.
    """

    def __init__(self, cause: str) -> None:
        super().__init__(f"database unavailable ({cause})")
        self.cause = cause


class ProviderError(TrackerError):
    """KIMISMS refused or failed a call.

    ``permanent`` decides the retry policy: a permanent error (400, bad
    credentials) will fail the same way again; a transient one (429, 5xx,
    timeouts, connection errors) may succeed on retry with the same key.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        status_code: int | None = None,
        field_errors: Mapping[str, Sequence[str]] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status_code = status_code
        self.field_errors = {k: list(v) for k, v in (field_errors or {}).items()}
        self.retry_after = retry_after


class IdempotencyKeyTaken(Conflict):
    """Another request stored this caller's Idempotency-Key first (a unique violation)."""


def echo(raw: str) -> str:
    """Quote a caller's input in an error, cut short so a huge body stays small."""
    if len(raw) > MAX_ECHOED_CHARS:
        return repr(raw[:MAX_ECHOED_CHARS] + "...")
    return repr(raw)


def refuse_json_constant(name: str) -> None:
    """For ``json.loads(parse_constant=...)``: JSON (RFC 8259) has no NaN or Infinity."""
    raise ValueError(f"{name} is not a JSON value")
