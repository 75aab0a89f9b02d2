"""Header names of our own API, shared by the service and its HTTP-only client."""

from __future__ import annotations

# A caller's key that makes a send safe to retry (1-255 printable ASCII characters).
IDEMPOTENCY_KEY = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX_CHARS = 255
# Set on an answer replayed for a repeated Idempotency-Key.
IDEMPOTENT_REPLAYED = "Idempotent-Replayed"
