"""Standard Webhooks v1 signing: ``whsec_`` secrets, message ids and the three headers.

A delivery carries ``webhook-id`` (the same on every retry of one event, so a receiver
can drop duplicates), ``webhook-timestamp`` (integer Unix seconds of this attempt, fresh
on each one, so a receiver can refuse replays) and ``webhook-signature``: one
``v1,<base64 HMAC-SHA256>`` entry per secret over ``{id}.{timestamp}.{body}``,
space-separated. While an endpoint's secret rotates, the new and the old secret both
sign, so a receiver holding either one accepts the delivery.

Pure: no I/O. Secret values never appear in an error message.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import math
import secrets as random_source
import uuid
from typing import TYPE_CHECKING

from tracker import clock, ids

if TYPE_CHECKING:
    from collections.abc import Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's marker, not a secret
SECRET_BYTES = 32
# The specification's range for symmetric keys: 192 to 512 bits.
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
MESSAGE_ID_PREFIX = "msg_"
SIGNATURE_VERSION = "v1"

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
JSON_MEDIA_TYPE = "application/json"


def new_secret() -> str:
    """A new signing secret: ``whsec_`` and base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(random_source.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret holds; ValueError (without the value) if bad."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError(f"a webhook secret must be {SECRET_PREFIX!r} and base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(
            f"a webhook secret must hold {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes,"
            f" not {len(key)}"
        )
    return key


def message_id(event_id: uuid.UUID) -> str:
    """The ``webhook-id`` of an event: derived from its stored id, so every retry agrees."""
    return MESSAGE_ID_PREFIX + event_id.hex


def new_message_id() -> str:
    """A ``webhook-id`` for a new event (time-ordered, like every id of ours)."""
    return message_id(ids.uuid7())


def active_secrets(
    secret: str, previous_secret: str | None, previous_until: dt.datetime | None, now: dt.datetime
) -> list[str]:
    """The secrets that sign now: the current one, and the previous one in its grace period."""
    if previous_secret is None or previous_until is None:
        return [secret]
    if clock.require_aware(now) >= clock.require_aware(previous_until):
        return [secret]
    return [secret, previous_secret]


def unix_seconds(timestamp: dt.datetime) -> int:
    """The integer Unix seconds of an aware time, as ``webhook-timestamp`` carries them."""
    return math.floor(clock.require_aware(timestamp).timestamp())


def sign(secrets: Sequence[str], msg_id: str, timestamp: dt.datetime, body: bytes) -> str:
    """The ``webhook-signature`` value: one ``v1,`` entry per secret, in their order."""
    if not secrets:
        raise ValueError("at least one webhook secret is needed to sign")
    if not msg_id or "." in msg_id:
        # The id is a field of the signed content, which full stops delimit.
        raise ValueError("a webhook message id must be non-empty and hold no '.'")
    content = b"%s.%d.%s" % (msg_id.encode(), unix_seconds(timestamp), body)
    return " ".join(_signature(secret_key(secret), content) for secret in secrets)


def headers(
    msg_id: str, timestamp: dt.datetime, body: bytes, secrets: Sequence[str]
) -> dict[str, str]:
    """The headers of one delivery attempt of ``body`` at ``timestamp``."""
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(unix_seconds(timestamp)),
        SIGNATURE_HEADER: sign(secrets, msg_id, timestamp, body),
        "content-type": JSON_MEDIA_TYPE,
    }


def _signature(key: bytes, content: bytes) -> str:
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"
