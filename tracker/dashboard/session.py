"""The dashboard's login session: a signed cookie naming the API key it was opened with.

The cookie holds the key's id, never the key, and an expiry; every request looks
the key up again, so a revoked key ends its sessions at once. The CSRF token is
an HMAC of the session's nonce: a form posts it back and a forged page cannot
read it (SameSite=Strict and the CSP do the rest). The login form, before any
session, has its own: an HMAC of a random pre-session cookie's value, so a login
POST from another site (login CSRF) lacks the cookie or the token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from tracker.settings import Settings, is_loopback_host

COOKIE_NAME = "tracker_session"
LOGIN_COOKIE_NAME = "tracker_login"
LOGIN_COOKIE_PATH = "/dashboard/login"
LOGIN_LIFETIME_SECONDS = 3600  # a login form left open longer is issued again
LIFETIME_SECONDS = 8 * 3600
SECRET_FILE = "session-secret"  # noqa: S105 - a file name, not a secret


@dataclass(frozen=True)
class Session:
    key_id: str
    nonce: str
    expires_at: int  # Unix seconds


def secret_of(settings: Settings) -> bytes:
    """TRACKER_SESSION_SECRET, or the one generated once into the data directory."""
    configured = settings.session_secret.get_secret_value()
    if configured:
        return configured.encode()
    path = settings.data_dir / SECRET_FILE
    if not path.exists():
        _create_secret(path)
    return path.read_bytes().strip()


def _create_secret(path: Path) -> None:
    """Written once with O_EXCL, so two processes starting together agree on one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(secrets.token_urlsafe(32))


def _mac(secret: bytes, payload: bytes) -> str:
    digest = hmac.new(secret, payload, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def new(key_id: str, now: float | None = None) -> Session:
    issued = time.time() if now is None else now
    return Session(key_id, secrets.token_urlsafe(16), int(issued) + LIFETIME_SECONDS)


def encode(session: Session, secret: bytes) -> str:
    raw = json.dumps({"k": session.key_id, "n": session.nonce, "e": session.expires_at})
    payload = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
    return f"{payload}.{_mac(secret, payload.encode())}"


def decode(cookie: str, secret: bytes, now: float | None = None) -> Session | None:
    """The session of a cookie we signed and that has not expired; None otherwise."""
    payload, _, mac = cookie.partition(".")
    if not hmac.compare_digest(mac, _mac(secret, payload.encode())):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        found = Session(str(data["k"]), str(data["n"]), int(data["e"]))
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    return found if found.expires_at > (time.time() if now is None else now) else None


def csrf_token(session: Session, secret: bytes) -> str:
    return _mac(secret, f"csrf|{session.nonce}".encode())


def csrf_ok(session: Session, secret: bytes, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(token, csrf_token(session, secret))


def new_login_nonce() -> str:
    return secrets.token_urlsafe(16)


def login_token(nonce: str, secret: bytes) -> str:
    """The login form's CSRF token for the pre-session cookie ``nonce``."""
    return _mac(secret, f"login|{nonce}".encode())


def login_ok(nonce: str | None, secret: bytes, token: str | None) -> bool:
    """The form's token matches its pre-session cookie (both present)."""
    if not nonce or token is None:
        return False
    return hmac.compare_digest(token, login_token(nonce, secret))


def cookie_secure(host: str | None) -> bool:
    """Secure everywhere but loopback, where the dashboard is served over plain http."""
    return not is_loopback_host(host)
