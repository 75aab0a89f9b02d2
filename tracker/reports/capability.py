"""Callback URLs as capabilities: ``/v1/callbacks/kimisms/{id}/{token}``.

KIMISMS does not sign callbacks, so the URL itself is the secret. The token is
``{key_id}.{mac}``: a truncated HMAC-SHA256 (160 bits) of the message id under
the key named by ``key_id``. The first configured key signs new URLs and every
key verifies, so keys rotate without breaking messages in flight. Verifying
needs no database, so it also works while the database is down.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Sequence

from tracker.settings import CallbackKey

MAC_BYTES = 20  # 160 bits, above the 128-bit floor
PATH_TEMPLATE = "/v1/callbacks/kimisms/{id}/{token}"
_DOMAIN = b"kimisms-callback:"  # keeps these MACs from meaning anything elsewhere


def _mac(key: CallbackKey, message_id: uuid.UUID) -> str:
    digest = hmac.new(key.secret, _DOMAIN + message_id.bytes, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:MAC_BYTES]).rstrip(b"=").decode()


def sign(keys: Sequence[CallbackKey], message_id: uuid.UUID) -> str:
    """The token for a message, under the first (current) key."""
    key = keys[0]
    return f"{key.key_id}.{_mac(key, message_id)}"


def verify(keys: Sequence[CallbackKey], message_id: uuid.UUID, token: str) -> bool:
    """Constant-time check of a token against the key it names."""
    key_id, _, mac = token.partition(".")
    key = next((k for k in keys if k.key_id == key_id), None)
    if key is None or not mac:
        return False
    return hmac.compare_digest(mac.encode(), _mac(key, message_id).encode())


def callback_url(public_url: str, keys: Sequence[CallbackKey], message_id: uuid.UUID) -> str:
    """The URL handed to KIMISMS as ``callback_url`` for this message."""
    path = PATH_TEMPLATE.format(id=message_id, token=sign(keys, message_id))
    return public_url.rstrip("/") + path
