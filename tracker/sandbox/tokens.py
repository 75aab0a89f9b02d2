"""Access tokens: HS256 JWTs issued to the one client the sandbox knows.

Expiry is checked against the injected clock rather than PyJWT's wall clock,
so tests can age a token without sleeping. The answers mirror the provider's
(Django REST framework with simplejwt): a missing or malformed header and a
bad token have different details.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

import jwt

from tracker.sandbox.config import SandboxConfig

ALGORITHM = "HS256"
NOT_PROVIDED = "Authentication credentials were not provided."
NOT_VALID = "Given token not valid for any token type"


class AuthenticationError(Exception):
    """The call carries no usable token; ``detail`` is the 401 body's text."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class IssuedToken:
    """What generate-token answers with."""

    access_token: str
    expires_in: int

    def to_json(self) -> dict[str, Any]:
        return {
            "token_type": "Bearer",
            "access_token": self.access_token,
            "expires_in": self.expires_in,
        }


def credentials_match(config: SandboxConfig, client_id: str, client_secret: str) -> bool:
    """Compare both values in constant time, whichever one is wrong."""
    id_ok = hmac.compare_digest(client_id.encode(), config.client_id.encode())
    secret_ok = hmac.compare_digest(client_secret.encode(), config.client_secret.encode())
    return id_ok and secret_ok


def issue(config: SandboxConfig, now: float) -> IssuedToken:
    """A token for the configured client, valid ``token_lifetime_seconds`` from now."""
    issued_at = int(now)
    claims = {
        "sub": config.client_id,
        "iat": issued_at,
        "exp": issued_at + config.token_lifetime_seconds,
        "token_type": "access",
    }
    token = jwt.encode(claims, config.jwt_secret, algorithm=ALGORITHM)
    return IssuedToken(token, config.token_lifetime_seconds)


def authenticate(config: SandboxConfig, authorization: str | None, now: float) -> str:
    """The client id a ``Bearer`` header proves, or ``AuthenticationError``."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or " " in token.strip():
        raise AuthenticationError(NOT_PROVIDED)
    try:
        claims = jwt.decode(
            token.strip(),
            config.jwt_secret,
            algorithms=[ALGORITHM],
            options={"verify_exp": False, "verify_iat": False, "require": ["sub", "exp"]},
        )
    except jwt.PyJWTError as exc:
        raise AuthenticationError(NOT_VALID) from exc
    exp = claims["exp"]
    if not isinstance(exp, int) or now >= exp or claims["sub"] != config.client_id:
        raise AuthenticationError(NOT_VALID)
    return config.client_id
