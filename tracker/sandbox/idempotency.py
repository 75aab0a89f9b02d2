"""The Idempotency-Key cache: a replay gets the original answer and sends nothing.

What the documentation leaves open, decided here (and in ``docs/sandbox.md``):

- keys are scoped to the client id and kept ``idempotency_ttl_seconds`` from
  the first answer; after that the key is new again (and a send goes out);
- only definite answers are cached: 200 (accepted) and 400 (validation).
  401, 429 and 500 are not, so a retry after them is a fresh attempt;
- a replay with a *different* body still gets the original answer (status and
  body), like Stripe-style APIs that ignore the body of a replay; the sandbox
  flags the mismatch in its call log so tests can see it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

CACHED_STATUSES = frozenset({200, 400})


def fingerprint(body: dict[str, Any]) -> str:
    """A canonical form of a body, to tell a true replay from a reused key."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class CachedAnswer:
    """The first answer given under a key."""

    status_code: int
    body: dict[str, Any]
    fingerprint: str
    stored_at: float
    message_id: str | None


class IdempotencyCache:
    """Answers by (client id, key), forgotten after the TTL."""

    def __init__(self, ttl_seconds: float) -> None:
        self._ttl_seconds = ttl_seconds
        self._answers: dict[tuple[str, str], CachedAnswer] = {}

    def get(self, client_id: str, key: str, now: float) -> CachedAnswer | None:
        """The live answer for a key, dropping it if its time is up."""
        answer = self._answers.get((client_id, key))
        if answer is not None and now - answer.stored_at >= self._ttl_seconds:
            del self._answers[(client_id, key)]
            return None
        return answer

    def put(self, client_id: str, key: str, answer: CachedAnswer) -> None:
        """Remember an answer if it is one that a replay must repeat."""
        if answer.status_code in CACHED_STATUSES:
            self._answers[(client_id, key)] = answer

    def clear(self) -> None:
        self._answers.clear()
