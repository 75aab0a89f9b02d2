"""Sending: the send API, its validation and idempotency, and the rows it stores."""
