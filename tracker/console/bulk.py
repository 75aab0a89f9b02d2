"""``tracker send --csv``: rows of a CSV file, through the batch API in chunks.

A batch is all or nothing, so a chunk refused with per-item errors
(``messages[3].to``) is sent again without the refused rows, which are
reported with their reasons. Every request carries an Idempotency-Key, so a
chunk retried after a lost connection is never queued twice.
"""

from __future__ import annotations

import csv
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, TextIO

import httpx

from tracker.domain import headers

BATCH_PATH = "/v1/messages/batch"
DEFAULT_CHUNK_SIZE = 1000
TRANSPORT_RETRIES = 3
RETRY_PAUSE_SECONDS = 1.0
DELIMITERS = ",;\t|"
SNIFF_CHARS = 64 * 1024
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_ITEM_ERROR = re.compile(r"messages\[([0-9]+)\]\.?(.*)")

Post = Callable[[str, dict[str, Any], dict[str, str]], httpx.Response]


class BulkError(Exception):
    """The file or the service stopped the run; the message is one line."""


@dataclass(frozen=True)
class Row:
    line: int  # in the CSV file, header = 1
    to: str
    message: str


@dataclass(frozen=True)
class Refused:
    line: int
    to: str
    errors: dict[str, list[str]]


@dataclass
class Outcome:
    accepted: list[tuple[int, str]] = field(default_factory=list)  # (line, message id)
    refused: list[Refused] = field(default_factory=list)


def placeholders(template: str) -> list[str]:
    """The column names a template uses, in order."""
    return [found[1] for found in _PLACEHOLDER.finditer(template) if found[1] is not None]


def render(template: str, values: dict[str, str]) -> str:
    """Replace each ``{column}``; ``{{`` and ``}}`` are literal braces."""

    def fill(found: re.Match[str]) -> str:
        if found[0] in {"{{", "}}"}:
            return found[0][0]
        return values[found[1]]

    return _PLACEHOLDER.sub(fill, template)


def read_rows(path: Path, template: str, to_column: str = "to") -> tuple[list[Row], list[Refused]]:
    """The file's rows as messages, and the rows refused because a placeholder is empty.

    The delimiter (``,`` ``;`` tab or ``|``) is read from the file; a UTF-8 BOM is
    skipped. BulkError for a file that cannot work (unreadable, a column missing).
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, dialect=_dialect(handle))
            columns = set(reader.fieldnames or ())
            needed = placeholders(template)
            missing = [name for name in [to_column, *needed] if name not in columns]
            if missing:
                found = ", ".join(sorted(columns)) or "none"
                raise BulkError(f"{path.name} has no column {missing[0]!r} (it has: {found})")
            rows: list[Row] = []
            unfilled: list[Refused] = []
            for values in reader:
                text, to = _text(values), values[to_column] or ""
                empty = [name for name in dict.fromkeys(needed) if not text[name].strip()]
                if empty:
                    reason = [f"column {name!r} is empty" for name in empty]
                    unfilled.append(Refused(reader.line_num, to, {"message": reason}))
                else:
                    rows.append(Row(reader.line_num, to, render(template, text)))
            return rows, unfilled
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BulkError(f"cannot read {path}: {exc}") from None


def _dialect(handle: TextIO) -> type[csv.Dialect]:
    """The file's dialect, guessed from its start; plain commas when it cannot tell."""
    sample = handle.read(SNIFF_CHARS)
    handle.seek(0)
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS)
    except csv.Error:  # one column, or nothing to go on
        return csv.excel


def _text(values: dict[str | None, str | None]) -> dict[str, str]:
    return {key: value or "" for key, value in values.items() if key is not None}


def chunks(rows: list[Row], size: int) -> Iterator[list[Row]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _post_retrying(post: Post, body: dict[str, Any], key: str) -> httpx.Response:
    """POST with the same Idempotency-Key until the service answers (or we give up)."""
    for attempt in range(1, TRANSPORT_RETRIES + 1):
        try:
            return post(BATCH_PATH, body, {headers.IDEMPOTENCY_KEY: key})
        except httpx.TransportError:
            if attempt == TRANSPORT_RETRIES:
                raise
            time.sleep(RETRY_PAUSE_SECONDS * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _item_errors(errors: dict[str, list[str]], size: int) -> dict[int, dict[str, list[str]]]:
    """``messages[3].to`` -> {3: {"to": [...]}}; an error about the whole batch hits every row."""
    found: dict[int, dict[str, list[str]]] = {}
    for key, messages in errors.items():
        item = _ITEM_ERROR.fullmatch(key)
        targets = [int(item[1])] if item and int(item[1]) < size else range(size)
        for index in targets:
            found.setdefault(index, {})[(item[2] if item else key) or "message"] = messages
    return found


def send_chunk(
    post: Post, rows: list[Row], extra: dict[str, Any], run_id: str, outcome: Outcome
) -> None:
    """Queue a chunk; rows refused by item are dropped and the rest sent again."""
    for attempt in range(len(rows) + 1):
        if not rows:
            return
        body = {"messages": [{"to": row.to, "message": row.message, **extra} for row in rows]}
        response = _post_retrying(post, body, f"{run_id}-{rows[0].line}-{attempt}")
        if response.status_code == HTTPStatus.ACCEPTED:
            ids = [item["id"] for item in response.json()["messages"]]
            outcome.accepted += [(row.line, i) for row, i in zip(rows, ids, strict=True)]
            return
        if response.status_code != HTTPStatus.BAD_REQUEST:
            raise BulkError(explain(response))
        refused = _item_errors(response.json().get("errors", {}), len(rows))
        if not refused:
            raise BulkError(explain(response))
        outcome.refused += [Refused(rows[i].line, rows[i].to, refused[i]) for i in sorted(refused)]
        rows = [row for index, row in enumerate(rows) if index not in refused]


def send_rows(
    post: Post,
    rows: list[Row],
    extra: dict[str, Any],
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    *,
    on_chunk: Callable[[int], None] | None = None,
    run_id: str | None = None,
) -> Outcome:
    """Queue every row, chunk by chunk; ``on_chunk`` hears how many rows each one settled.

    Each chunk's Idempotency-Key derives from ``run_id``: the same run again with the
    same ``run_id`` queues nothing twice.
    """
    outcome = Outcome()
    run_id = run_id or uuid.uuid4().hex[:12]
    for chunk in chunks(rows, chunk_size):
        send_chunk(post, chunk, extra, run_id, outcome)
        if on_chunk is not None:
            on_chunk(len(chunk))
    return outcome


def explain(response: httpx.Response) -> str:
    """An error answer as one line: ``400: to: '0712' is not ...; message: ...``."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("errors"), dict):
        fields = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in body["errors"].items())
        return f"{response.status_code}: {fields}"
    if isinstance(body, dict) and "detail" in body:
        return f"{response.status_code}: {body['detail']}"
    return f"HTTP {response.status_code} from {response.request.url.path}"
