"""Log lines mask phone numbers and never carry bodies, tokens or secrets."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from tracker import logs


@pytest.mark.parametrize(
    "text",
    [
        "254712345678",
        "+254712345678",
        "0712345678",
        "to 254112345678 now",
        "tel:+254712345678",
        "call 0712 345 678 today",
        "+254 712 345 678",
        "254-712-345-678",
        "0712-345678",
        "'0712.345.678' is not valid",
        "(0712) 345 678",
        "call 0712345678.",
    ],
)
def test_phone_numbers_are_masked_in_any_form(text: str) -> None:
    """Every common Kenyan form becomes 2547****5678 (or 2541****5678)."""
    masked = logs.mask_phone_numbers(text)
    assert "2345678" not in masked
    assert "****5678" in masked


@pytest.mark.parametrize(
    "text",
    [
        "attempt 3 took 1234 ms",
        "01a21117-3e98-7254-a123-712345678901",  # digit runs inside a UUID
        "01a21117-3e98-7254-a123-fe7123456789",
        "req-0712345678x",
        "01a21117-3e98-7254-a123-712 345 678",
        "order 7123 45678",
        "peer 192.168.100.200 went away",
        "10.171.234.567",
    ],
)
def test_ids_and_other_numbers_are_left_alone(text: str) -> None:
    """Ids, counts and durations are not mistaken for phone numbers."""
    assert logs.mask_phone_numbers(text) == text


def test_secret_bearing_fields_are_redacted_at_any_depth() -> None:
    """Bodies, tokens and authorization headers are dropped; numbers masked inside dicts."""
    event = logs.redact(
        None,
        "info",
        {
            "event": "x",
            "token": "abc",
            "body": "hello",
            "payload": {"contact": "254712345678", "Authorization": "Bearer t"},
        },
    )
    assert event["token"] == logs.REDACTED
    assert event["body"] == logs.REDACTED
    assert event["payload"] == {"contact": "2547****5678", "Authorization": logs.REDACTED}


def test_json_lines_are_written_for_structlog_and_stdlib_loggers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Both our events and foreign (uvicorn) records come out as masked JSON lines."""
    early = logs.get_logger("tracker.early")  # module-level loggers exist before configure()
    logs.configure("json", "INFO")
    try:
        early.info("message_queued", contact="254712345678")
        early.debug("not_at_info")
        logging.getLogger("uvicorn.error").warning("peer 0712345678 went away")
        logs.flush()
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    assert lines[0]["event"] == "message_queued"
    assert lines[0]["contact"] == "2547****5678"
    assert lines[0]["logger"] == "tracker.early"
    assert len(lines) == 2
    assert lines[1]["event"] == "peer 2547****5678 went away"
    assert lines[1]["level"] == "warning"


def test_httpx_request_lines_never_reach_the_log(capsys: pytest.CaptureFixture[str]) -> None:
    """httpx logs each URL at INFO; a sandbox callback URL carries a capability token."""
    logs.configure("json", "INFO")
    try:
        url = "http://127.0.0.1:8000/v1/callbacks/kimisms/01a2/k1.secret-token"
        logging.getLogger("httpx").info("HTTP Request: POST %s", url)
        logging.getLogger("httpx").warning("a warning still shows")
        logs.flush()
        out = capsys.readouterr().out
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    assert "secret-token" not in out
    assert "a warning still shows" in out
