"""Log lines mask phone numbers and never carry bodies, tokens or secrets."""

from __future__ import annotations

import json
import logging

import phonenumbers
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

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


@pytest.mark.parametrize(
    "text",
    [
        "00254712345678",
        "000254712345678",
        "2547 1234 5678",
        "07 12 34 56 78",
        "0712\u00a0345\u00a0678",
        "+254\u202f712\u202f345\u202f678",
        "+254 (0) 712 345 678",
        "(+254) 712-345-678",
        "0712 - 345 - 678",
        "254.712.345.678",
        "0\u2011712\u2011345\u2011678",
        "712\u00a0345\u00a0678",
    ],
)
def test_item_11_the_forms_that_leaked_are_masked(text: str) -> None:
    """Item 11: 00254, 4-4-4 groups, pairs and no-break spaces are masked too."""
    masked = logs.mask_phone_numbers(f"to {text} now")
    assert _digits(masked) == "25475678"
    assert masked.startswith("to 2547****5678")


@pytest.mark.parametrize(
    "text",
    [
        "took 0.25 s at 2026-12-01T12:00:00.712345+00:00",
        "2026-12-01 07:12:34",
        "peer [::1]:8000 and 127.0.0.1:5432",
        "counts 712, 345, 678",
        "sent 12345 of 712345",
    ],
)
def test_item_11_timestamps_addresses_and_counts_are_still_left_alone(text: str) -> None:
    """Item 11: the wider pattern does not swallow times, addresses or counts."""
    assert logs.mask_phone_numbers(text) == text


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


PROPERTY = settings(max_examples=500, deadline=None, derandomize=True, database=None)
SEPARATORS = [" ", "\u00a0", "\u202f", "\u2009", ".", "-", " - ", "\u2011", "\u200b", "", "  "]
PREFIXES = ["", "0", "(0", "254", "+254", "00254", "+254 (0)", "(+254)", "(254)"]


@st.composite
def rendered_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """A Kenyan mobile number (its national digits) and one way of writing it in a log."""
    national = draw(st.sampled_from("17")) + draw(st.text("0123456789", min_size=8, max_size=8))
    prefix = draw(st.sampled_from(PREFIXES))
    digits = national
    if prefix == "(0":  # "(0712) 345 678": the bracket closes after the first group
        prefix, digits = f"(0{national[:3]})", national[3:]
    # Bare, phonenumbers reads only the whole number or 712 345 678 (not "order 7123 45678").
    any_cuts = st.sets(st.integers(1, len(digits) - 1), max_size=8)
    cuts = sorted(draw(any_cuts if prefix else st.sampled_from([set(), {3, 6}])))
    groups = [digits[i:j] for i, j in zip([0, *cuts], [*cuts, len(digits)], strict=True)]
    parts = [prefix, *groups] if prefix else groups
    written = parts[0]
    for part in parts[1:]:
        written += draw(st.sampled_from(SEPARATORS)) + part
    return national, written


@PROPERTY
@given(
    rendered_numbers(),
    st.sampled_from(["", "to ", "call ", "tel:", "contact=", "(", "'", "number: "]),
    st.sampled_from(["", " now", ".", ",", ")", "'", "\n", "; retrying"]),
)
def test_item_11_numbers_in_any_grouping_never_show_their_digits(
    number: tuple[str, str], before: str, after: str
) -> None:
    """Item 11 (property): any grouping, separator and prefix, in text, is masked."""
    national, written = number
    masked = logs.mask_phone_numbers(before + written + after)
    assert _digits(masked) == f"254{national[0]}{national[-4:]}", masked


@st.composite
def digit_soups(draw: st.DrawFn) -> str:
    """A national number with any prefix, a few more digits, cut anywhere by separators."""
    national = draw(st.sampled_from("17")) + draw(st.text("0123456789", min_size=8, max_size=8))
    prefix = draw(st.sampled_from(["", "+", "0", "00", "000", "+254", "254", "00254", "2540"]))
    digits = prefix + national + draw(st.text("0123456789", max_size=2))
    cuts = sorted(draw(st.sets(st.integers(1, len(digits) - 1), max_size=8)))
    pieces = [digits[i:j] for i, j in zip([0, *cuts], [*cuts, len(digits)], strict=True)]
    return "".join(piece + draw(st.sampled_from(SEPARATORS)) for piece in pieces)


@PROPERTY
@given(digit_soups())
def test_item_11_whatever_phonenumbers_reads_as_a_kenyan_mobile_is_masked(soup: str) -> None:
    """Item 11 (property): each Kenyan mobile phonenumbers finds in a text is masked."""
    text = f"x {soup} y"
    masked = logs.mask_phone_numbers(text)
    for match in phonenumbers.PhoneNumberMatcher(text, "KE"):
        national = str(match.number.national_number)
        if match.number.country_code == 254 and national[0] in "17" and len(national) == 9:
            assert match.raw_string not in masked, (text, masked)


def _raise(error: Exception) -> None:
    raise error


def test_item_17_tracebacks_are_rendered_and_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    """Item 17: exc_info becomes a JSON traceback, its numbers masked and tokens cut."""
    logs.configure("json", "INFO")
    url = "https://tracker.test/v1/callbacks/kimisms/01a2/k1.capability-secret"
    try:
        try:
            _raise(RuntimeError(f"0712 345 678 at {url} with Bearer eyJhbGciOi.eyJzdWIi.c2ln"))
        except RuntimeError:
            logs.get_logger("tracker.test").warning("loop_edge_failed", exc_info=True)
        try:
            _raise(ValueError("password='hunter2hunter2' for 00254712345678"))
        except ValueError:
            logging.getLogger("uvicorn.error").exception("stdlib edge")
        logs.flush()
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    assert [line["event"] for line in lines] == ["loop_edge_failed", "stdlib edge"]
    ours, foreign = (line["exception"] for line in lines)
    assert ours.startswith("Traceback (most recent call last):")
    assert "RuntimeError: 2547****5678 at" in ours
    assert "/v1/callbacks/kimisms/01a2/[redacted]" in ours
    assert "Bearer [redacted]" in ours
    assert "ValueError: password='[redacted]' for 2547****5678" in foreign
    out = json.dumps(lines)
    for secret in ("capability-secret", "eyJ", "hunter2", "345 678", "712345678"):
        assert secret not in out


def test_get_logger_returns_the_filtering_bound_logger_its_type_names() -> None:
    """Item 6: the logger configure() builds has FilteringBoundLogger's methods, as typed."""
    logs.configure("json", "WARNING")
    logger = logs.get_logger("tracker.typed").bind(request_id="r-1")
    assert type(logger).__name__ == "BoundLoggerFilteringAtWarning"
    for method in ("debug", "info", "warning", "error", "exception", "bind", "new", "unbind"):
        assert callable(getattr(logger, method))
    logs.configure("json", "INFO")
