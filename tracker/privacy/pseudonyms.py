"""Keyed hashes that stand in for phone numbers.

A pseudonym is HMAC-SHA256 of the number in its normalised form (``254712345678``)
under ``TRACKER_PSEUDONYM_KEY``, in hex. The same number always gives the same
pseudonym, so a stored pseudonym is still found by the number, but without the
key the number cannot be read back out of it (nor found by trying every number:
Kenya has only about 10^9 of them, so an unkeyed hash would not protect them).

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac

LENGTH = 64  # hex characters of an HMAC-SHA256


def of(msisdn: str, key: bytes) -> str:
    """The pseudonym of a normalised number (``254712345678``)."""
    return hmac.new(key, msisdn.encode(), hashlib.sha256).hexdigest()
