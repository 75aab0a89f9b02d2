"""Request bodies as the provider checks them, with its field-to-messages errors.

The wording follows Django REST framework, which the provider's documented
errors come from (``{"client_id": ["This field is required."]}``). Every field
is checked, so one answer lists every problem, as DRF does.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

REQUIRED = "This field is required."
BLANK = "This field may not be blank."
NOT_A_STRING = "Not a valid string."
SENDER_NOT_FOUND = "Sender ID not found"
INVALID_CONTACT = "Enter a valid phone number (9-13 digits)."
INVALID_CALLBACK_URL = "Enter a valid HTTPS URL."
INVALID_CREDENTIALS = "Invalid credentials"
GRANT_TYPE = "client_credentials"

CONTACT_PATTERN = re.compile(r"[0-9]{9,13}")

FieldErrors = dict[str, list[str]]


class MalformedBodyError(Exception):
    """The body is not a JSON object; ``detail`` is the 400 body's text."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class TokenRequest:
    """A well-formed generate-token body (credentials not yet checked)."""

    client_id: str
    client_secret: str


@dataclass(frozen=True)
class SendRequest:
    """A valid send-sms body."""

    sender_name: str
    contact: str
    message: str
    callback_url: str | None


def parse_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or ``MalformedBodyError``."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedBodyError(f"JSON parse error - {exc}") from exc
    if not isinstance(body, dict):
        kind = type(body).__name__
        raise MalformedBodyError(f"Invalid data. Expected a dictionary, but got {kind}.")
    return body


def _string(body: dict[str, Any], field: str, errors: FieldErrors) -> str | None:
    """A required non-blank string field, or ``None`` with its error recorded."""
    value = body.get(field)
    if value is None:
        errors[field] = [REQUIRED]
        return None
    if not isinstance(value, str):
        errors[field] = [NOT_A_STRING]
        return None
    if not value.strip():
        errors[field] = [BLANK]
        return None
    return value


def token_request(body: dict[str, Any]) -> TokenRequest | FieldErrors:
    """The generate-token fields, or every field's errors."""
    errors: FieldErrors = {}
    grant_type = _string(body, "grant_type", errors)
    client_id = _string(body, "client_id", errors)
    client_secret = _string(body, "client_secret", errors)
    if grant_type is not None and grant_type != GRANT_TYPE:
        errors["grant_type"] = [f'"{grant_type}" is not a valid choice.']
    if errors or client_id is None or client_secret is None:
        return errors
    return TokenRequest(client_id, client_secret)


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1: the only hosts allowed plain http."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_valid_callback_url(url: str) -> bool:
    """https anywhere; plain http only to loopback (the sandbox's one relaxation)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme == "https":
        return bool(host)
    return parts.scheme == "http" and is_loopback_host(host)


def _callback_url(body: dict[str, Any], errors: FieldErrors) -> str | None:
    value = body.get("callback_url")
    if value is None:
        return None
    if not isinstance(value, str) or not is_valid_callback_url(value):
        errors["callback_url"] = [INVALID_CALLBACK_URL]
        return None
    return value


def send_request(body: dict[str, Any], sender_names: tuple[str, ...]) -> SendRequest | FieldErrors:
    """The send-sms fields, or every field's errors."""
    errors: FieldErrors = {}
    sender_name = _string(body, "sender_name", errors)
    contact = _string(body, "contact", errors)
    message = _string(body, "message", errors)
    callback_url = _callback_url(body, errors)
    if sender_name is not None and sender_name not in sender_names:
        errors["sender_name"] = [SENDER_NOT_FOUND]
    if contact is not None and not CONTACT_PATTERN.fullmatch(contact):
        errors["contact"] = [INVALID_CONTACT]
    if errors or sender_name is None or contact is None or message is None:
        return errors
    return SendRequest(sender_name, contact, message, callback_url)
