"""The KIMISMS client: access token, send-sms, and the mapping of its failures.

Every failure becomes one ``errors.ProviderError``: ``permanent`` for answers
that will not change on retry (400: the message itself is refused), transient
for everything else (429, 5xx, timeouts, lost connections). ``ProviderUnavailable``
marks transient failures of the whole account (bad credentials, wrong URL),
on which the dispatcher pauses instead of burning the message's attempts.

The access token lasts 30 days; it is cached in memory and in the database
(shared by every process), refreshed a day before it expires, and once on a 401.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from http import HTTPStatus
from typing import Any

import httpx

from tracker import clock, db, errors, logs, metrics
from tracker.dispatch import token_cache
from tracker.dispatch.pacing import Pacer
from tracker.domain import retry_after, status

log = logs.get_logger(__name__)
DEFAULT_TOKEN_LIFETIME = dt.timedelta(days=30)
MAX_TOKEN_LIFETIME_SECONDS = 366 * 86400  # a bigger expires_in would overflow the date
RETRY_AFTER_MIN_SECONDS = 1.0
RETRY_AFTER_MAX_SECONDS = 3600.0


class ProviderUnavailable(errors.ProviderError):
    """The account cannot send at all right now (credentials, URL, outage)."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message, permanent=False, status_code=status_code)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The answer's Retry-After in seconds (see ``parse_retry_after``)."""
    return parse_retry_after(response.headers.get("retry-after"), clock.utcnow())


def parse_retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Retry-After as seconds, clamped to 1 s..1 h; None when absent or unreadable.

    A provider's header must never raise past the client, nor stall sending for
    longer than the clamp.
    """
    return retry_after.seconds(
        value, now, minimum=RETRY_AFTER_MIN_SECONDS, maximum=RETRY_AFTER_MAX_SECONDS
    )


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's limit
        return None


def field_errors(body: Any) -> dict[str, list[str]]:
    """The provider's ``{"field": ["message", ...]}`` validation body, normalised."""
    if not isinstance(body, dict):
        return {}
    result: dict[str, list[str]] = {}
    for key, value in body.items():
        items = value if isinstance(value, list) else [value]
        result[str(key)] = [str(item) for item in items]
    return result


def error_for(response: httpx.Response) -> errors.ProviderError:
    """Map a non-200 answer to the one error type, permanent or not."""
    code = response.status_code
    body = _json(response)
    if code == HTTPStatus.TOO_MANY_REQUESTS:
        return errors.ProviderError(
            "rate limited by KIMISMS",
            permanent=False,
            status_code=code,
            retry_after=retry_after_seconds(response),
        )
    if code in {400, 422}:
        fields = field_errors(body)
        summary = "; ".join(f"{k}: {', '.join(v)}" for k, v in fields.items())
        return errors.ProviderError(
            f"refused by KIMISMS: {summary or 'bad request'}",
            permanent=True,
            status_code=code,
            field_errors=fields,
        )
    if code >= HTTPStatus.INTERNAL_SERVER_ERROR:
        return errors.ProviderError(
            f"KIMISMS server error {code}", permanent=False, status_code=code
        )
    return ProviderUnavailable(f"KIMISMS answered {code}", status_code=code)


class KimismsClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        database: db.Database,
        *,
        client_id: str,
        client_secret: str,
        pacer: Pacer,
        rate_limit_pause_seconds: float = 60.0,
    ) -> None:
        self._http = http
        self._rate_limit_pause_seconds = rate_limit_pause_seconds  # a 429 without Retry-After
        self._database = database
        self._client_id = client_id
        self._client_secret = client_secret
        self.pacer = pacer
        self._token: token_cache.Token | None = None
        self._token_lock = asyncio.Lock()  # one refresh in flight at a time

    async def send_sms(
        self,
        *,
        message_id: uuid.UUID,
        sender_name: str,
        contact: str,
        message: str,
        callback_url: str,
        turn_taken: bool = False,
    ) -> status.Acceptance:
        """Send one message; the Idempotency-Key is our message id, on every retry.

        ``turn_taken``: the caller already took this call's turn from the pacer.
        """
        body = {
            "sender_name": sender_name,
            "contact": contact,
            "message": message,
            "callback_url": callback_url,
        }
        token = await self._access_token()
        response = await self._post_send(body, token, message_id, turn_taken=turn_taken)
        if response.status_code == HTTPStatus.UNAUTHORIZED:  # expired or revoked: refresh once
            token = await self._access_token(stale=token)
            response = await self._post_send(body, token, message_id)
        if response.status_code != HTTPStatus.OK:
            raise error_for(response)
        return self._acceptance(response)

    async def _post_send(
        self,
        body: dict[str, str],
        token: token_cache.Token,
        message_id: uuid.UUID,
        *,
        turn_taken: bool = False,
    ) -> httpx.Response:
        headers = {
            "Authorization": f"Bearer {token.value}",
            "Idempotency-Key": str(message_id),
        }
        return await self._post("/api/send-sms", body, headers, turn_taken=turn_taken)

    async def _post(
        self,
        path: str,
        body: dict[str, str],
        headers: dict[str, str] | None = None,
        *,
        turn_taken: bool = False,
    ) -> httpx.Response:
        if not turn_taken:
            await self.pacer.acquire()
        started = time.perf_counter()
        try:
            response = await self._http.post(path, json=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise errors.ProviderError(
                f"KIMISMS timed out ({type(exc).__name__})", permanent=False
            ) from None
        except httpx.HTTPError as exc:  # transport, undecodable body, redirect loop
            raise errors.ProviderError(
                f"cannot reach KIMISMS ({type(exc).__name__})", permanent=False
            ) from None
        finally:
            metrics.PROVIDER_LATENCY_SECONDS.labels(path=path).observe(
                time.perf_counter() - started
            )
        # A 429 pauses everyone, not just this call.
        if response.status_code == HTTPStatus.TOO_MANY_REQUESTS:
            metrics.PROVIDER_RATE_LIMITED.inc()
            self.pacer.pause(retry_after_seconds(response) or self._rate_limit_pause_seconds)
        return response

    @staticmethod
    def _acceptance(response: httpx.Response) -> status.Acceptance:
        body = _json(response)
        if not isinstance(body, dict) or not isinstance(body.get("message_id"), str):
            # Accepted or not, we cannot tell: a retry with the same key will say.
            raise errors.ProviderError("KIMISMS answered 200 without a message id", permanent=False)
        return status.Acceptance(
            provider_message_id=body["message_id"],
            provider_name=_text(body.get("provider")),
            status=_text(body.get("status")),
            description=_text(body.get("description")),
        )

    async def _access_token(self, stale: token_cache.Token | None = None) -> token_cache.Token:
        """A valid token: memory, then the database, then KIMISMS."""
        async with self._token_lock:
            if self._token is not None and self._token != stale and self._token.is_fresh():
                return self._token
            stored = await token_cache.load(self._database, self._client_id)
            if stored is not None and stored != stale and stored.is_fresh():
                self._token = stored
                return stored
            self._token = await self._new_token()
            await token_cache.save(self._database, self._client_id, self._token)
            return self._token

    async def _new_token(self) -> token_cache.Token:
        response = await self._post(
            "/api/generate-token",
            {
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret,
            },
        )
        body = _json(response)
        if response.status_code != HTTPStatus.OK or not isinstance(body, dict):
            error = error_for(response)
            if error.permanent:  # bad credentials are the account's problem, not a message's
                raise ProviderUnavailable(
                    "KIMISMS refused our credentials: check TRACKER_KIMISMS_CLIENT_ID/_SECRET",
                    status_code=response.status_code,
                )
            raise error
        lifetime = body.get("expires_in")
        seconds = None
        if isinstance(lifetime, int) and lifetime > 0:
            seconds = min(lifetime, MAX_TOKEN_LIFETIME_SECONDS)
        now = clock.utcnow()
        expires = now + (dt.timedelta(seconds=seconds) if seconds else DEFAULT_TOKEN_LIFETIME)
        metrics.TOKEN_REFRESHES.inc()
        log.info("provider_token_refreshed", expires_at=expires.isoformat(timespec="seconds"))
        return token_cache.Token(
            str(body.get("access_token", "")), expires_at=expires, obtained_at=now
        )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
