"""Structured logs: JSON lines in production, console on a terminal.

Every event passes through ``redact``: phone numbers are masked wherever they
appear, and fields that could carry a body, a token or a secret are dropped.
Standard-library loggers (uvicorn, alembic) are routed through the same chain.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import structlog

from tracker import logwriter

# Kenyan mobile numbers in every form phonenumbers reads as one (a property test
# checks it against phonenumbers' own matcher). With a prefix, the nine national
# digits may be grouped in any way, by the separators phonenumbers accepts
# (spaces, no-break and thin spaces, dots, dashes, parentheses, zero-width
# marks); bare (712345678), only whole or as 712 345 678 ("order 7123 45678" is
# not a number). Never a digit run inside a word, a UUID, a hex id or an IP address.
_SEPARATOR = "[ \t.()\\-\u00a0\u00ad\u2007\u2009\u200b\u2010-\u2015\u2212\u202f\u2060\u3000\uff0d]"
_GAP = _SEPARATOR + "{0,4}"  # up to "(0712) - 345 678"
_COUNTRY = rf"\(?(?:\+{_GAP}|0{_GAP}0{_GAP}(?:0{_GAP})?)?2{_GAP}5{_GAP}4\)?{_GAP}(?:\(0\)|0)?{_GAP}"
_TRUNK = rf"\(?0{_GAP}"  # 0712..., (0712) ...
PHONE_PATTERN = re.compile(
    r"(?<![\w-])"  # not inside a word or an id
    rf"(?:(?:{_COUNTRY}|{_TRUNK})(?P<prefixed>[17](?:{_GAP}\d){{8}})"
    rf"|(?<!\d\.)(?P<bare>[17]\d\d{_GAP}\d{{3}}{_GAP}\d{{3}})(?!\.\d))"  # nor in a dotted quad
    r"(?!\w|-\w)"  # nor followed by one (a dash then a word: the next group of an id)
)
_NOT_DIGIT = re.compile(r"\D")
SHORTEST_NUMBER = len("712345678")
# Keys whose values are never logged, whatever they hold.
SECRET_KEYS = frozenset(
    {
        "authorization",
        "access_token",
        "body",
        "client_secret",
        "message",
        "message_body",
        "password",
        "secret",
        "text",
        "token",
    }
)
REDACTED = "[redacted]"
# A traceback is text we did not write: besides numbers, cut what could be a
# credential in it (a callback URL's capability token, a bearer token, a JWT,
# a secret-named value in a repr).
_TRACEBACK_SECRETS = re.compile(
    r"(?P<keep>/v1/callbacks/kimisms/[^/\s'\"]+/|(?i:bearer)\s+"
    r"|(?i:access_token|client_secret|password|secret|token)['\"]?\s*[:=]\s*['\"]?)"
    r"[^\s'\",;}?#]+"
    r"|eyJ[\w-]+\.[\w-]+\.[\w-]*"
)


def replace_phone_numbers(text: str, replacement: Callable[[str], str]) -> str:
    """Every Kenyan mobile number in ``text``, in any written form, replaced by
    ``replacement(msisdn)`` of its normalised form (``254712345678``)."""

    def replace(match: re.Match[str]) -> str:
        return replacement("254" + _NOT_DIGIT.sub("", match["prefixed"] or match["bare"]))

    if len(text) < SHORTEST_NUMBER:
        return text
    return PHONE_PATTERN.sub(replace, text)


def mask_phone_numbers(text: str) -> str:
    """``254712345678`` -> ``2547****5678``, in any string."""
    return replace_phone_numbers(text, lambda msisdn: f"{msisdn[:4]}****{msisdn[-4:]}")


def scrub_traceback(text: str) -> str:
    """A rendered traceback with its numbers masked and anything token-like cut."""
    cut = _TRACEBACK_SECRETS.sub(lambda m: (m["keep"] or "") + REDACTED, text)
    return mask_phone_numbers(cut)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_phone_numbers(value)
    if isinstance(value, Mapping):
        return {
            k: REDACTED if str(k).lower() in SECRET_KEYS else _redact_value(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


def redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask numbers, drop secret-bearing fields."""
    for key in list(event_dict):
        if key.lower() in SECRET_KEYS:
            event_dict[key] = REDACTED
        elif key == "exception" and isinstance(event_dict[key], str):  # format_exc_info's
            event_dict[key] = scrub_traceback(event_dict[key])
        else:
            event_dict[key] = _redact_value(event_dict[key])
    return event_dict


def _shared_processors() -> list[structlog.types.Processor]:
    """Everything a caller or a traceback can put in a line is redacted; the fields
    added after ``redact`` are our own (level, time, module name), so the hot path
    does not scan them."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.format_exc_info,
        redact,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.add_logger_name,
    ]


def configure(log_format: str = "auto", level: str = "INFO") -> None:
    """Set up structlog and route stdlib logging (uvicorn, alembic) through it.

    Our own events take structlog's native path (the stdlib bridge costs several
    times more per line, which shows on the callback hot path); foreign stdlib
    records get the same processors via ProcessorFormatter. Both end as lines
    queued for ``logwriter``'s thread, which writes them to stdout.
    """
    use_json = log_format == "json" or (log_format == "auto" and not sys.stdout.isatty())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*_shared_processors(), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level]),
        logger_factory=_named_logger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = _QueuedHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # Our own canonical request line replaces uvicorn's access log (which would
    # print raw paths, callback tokens included).
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every request URL at INFO: the sandbox's callback URLs carry
    # capability tokens, and our provider calls have their own canonical lines.
    # At DEBUG aiosqlite logs every statement with its parameters, and SQLAlchemy's
    # engine would too: bodies and numbers (#17).
    for name in ("httpx", "httpcore", "aiosqlite", "sqlalchemy.engine", "sqlalchemy.pool"):
        logging.getLogger(name).setLevel(logging.WARNING)


class _QueuedLogger:
    """structlog's logger: hands rendered lines to the log writer thread, and
    carries a name for ``add_logger_name``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def msg(self, message: str) -> None:
        logwriter.WRITER.put(message)

    def error(self, message: str) -> None:
        """Errors are out before the caller goes on (it may be about to crash)."""
        logwriter.WRITER.put(message, urgent=True)

    debug = info = warn = warning = log = msg
    critical = exception = fatal = failure = err = error


class _QueuedHandler(logging.Handler):
    """Standard-library records (uvicorn, alembic) join the same queue, in order."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            logwriter.WRITER.put(self.format(record), urgent=record.levelno >= logging.ERROR)
        except Exception:  # logging must never raise into the caller
            self.handleError(record)

    def flush(self) -> None:
        """``logging.shutdown()`` at exit: lines logged after our own drain still go out."""
        logwriter.WRITER.flush()


def _named_logger(*args: Any) -> _QueuedLogger:
    return _QueuedLogger(str(args[0]) if args else "tracker")


def flush() -> None:
    """Wait until every line logged so far is written (tests; before exiting abruptly)."""
    logwriter.WRITER.flush()


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """A lazily configured logger: safe to create at import, before ``configure``.

    ``configure`` makes its class with ``make_filtering_bound_logger``, hence the type.
    """
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
