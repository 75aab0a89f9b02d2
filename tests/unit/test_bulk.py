"""`tracker send --csv`: templates, per-row refusals, retries under one Idempotency-Key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tracker.console import bulk


def test_a_template_fills_each_column_and_keeps_doubled_braces() -> None:
    """{name} is the row's value; {{ and }} are literal braces."""
    assert bulk.placeholders("Hi {name}, {{code}} {order}") == ["name", "order"]
    assert bulk.render("Hi {name}, {{code}} {order}", {"name": "Amina", "order": "7"}) == (
        "Hi Amina, {code} 7"
    )


def test_rows_keep_their_file_line_numbers(tmp_path: Path) -> None:
    """Line 1 is the header, so the first message is line 2; unused columns may be empty."""
    path = tmp_path / "people.csv"
    path.write_text("to,name,note\n0712345678,Amina,\n0712345679,Baraka,x\n", encoding="utf-8")
    rows, unfilled = bulk.read_rows(path, "Hi {name}")
    assert [(r.line, r.to, r.message) for r in rows] == [
        (2, "0712345678", "Hi Amina"),
        (3, "0712345679", "Hi Baraka"),
    ]
    assert unfilled == []


def test_a_row_with_an_empty_placeholder_is_refused_with_its_line(tmp_path: Path) -> None:
    """ "your order  is ready" is never sent: the row is refused, naming the empty column."""
    path = tmp_path / "orders.csv"
    path.write_text("to,order\n0712345678,A1\n0712345679, \n0712345680,B2\n", encoding="utf-8")
    rows, unfilled = bulk.read_rows(path, "your order {order} is ready")
    assert [r.line for r in rows] == [2, 4]
    assert unfilled == [bulk.Refused(3, "0712345679", {"message": ["column 'order' is empty"]})]


@pytest.mark.parametrize("delimiter", [";", "\t", "|", ","])
def test_the_delimiter_is_read_from_the_file(tmp_path: Path, delimiter: str) -> None:
    """Semicolon-, tab- and pipe-separated files work like comma-separated ones."""
    path = tmp_path / "people.csv"
    lines = [["to", "name"], ["0712345678", "Amina, Nairobi"], ["0712345679", "Baraka"]]
    text = "\n".join(delimiter.join(f'"{v}"' if "," in v else v for v in row) for row in lines)
    path.write_text(text + "\n", encoding="utf-8")
    rows, _ = bulk.read_rows(path, "Hi {name}")
    assert [(r.to, r.message) for r in rows] == [
        ("0712345678", "Hi Amina, Nairobi"),
        ("0712345679", "Hi Baraka"),
    ]


def test_a_utf8_bom_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    """A spreadsheet's BOM before 'to' does not hide the column."""
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffto;name\n0712345678;Wanjirũ\n".encode())
    rows, _ = bulk.read_rows(path, "Hi {name}")
    assert [(r.to, r.message) for r in rows] == [("0712345678", "Hi Wanjirũ")]


def test_a_one_column_file_needs_no_delimiter(tmp_path: Path) -> None:
    """Only numbers: the sniffer has nothing to go on, and commas are assumed."""
    path = tmp_path / "numbers.csv"
    path.write_text("to\n0712345678\n0712345679\n", encoding="utf-8")
    rows, _ = bulk.read_rows(path, "Hello")
    assert [r.to for r in rows] == ["0712345678", "0712345679"]


def test_the_run_id_makes_every_chunk_key(tmp_path: Path) -> None:
    """The same run_id gives the same Idempotency-Keys, so a rerun queues nothing twice."""
    seen: list[str] = []

    def post(path: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        seen.append(headers["Idempotency-Key"])
        answer = {"messages": [{"id": str(n)} for n, _ in enumerate(body["messages"])]}
        return httpx.Response(202, json=answer, request=httpx.Request("POST", path))

    for _ in range(2):
        bulk.send_rows(post, [bulk.Row(2, "1", "a"), bulk.Row(3, "2", "b")], {}, 1, run_id="r1")
    assert seen[:2] == seen[2:]
    assert all(key.startswith("r1-") for key in seen)


def test_a_template_naming_a_missing_column_stops_the_run(tmp_path: Path) -> None:
    """Nothing is sent when the file cannot fill the template."""
    path = tmp_path / "people.csv"
    path.write_text("to,name\n0712345678,Amina\n", encoding="utf-8")
    with pytest.raises(bulk.BulkError, match="no column 'order'"):
        bulk.read_rows(path, "Order {order}")


class FakeBatchApi:
    """Answers POST /v1/messages/batch: refuses items whose number is 'bad'."""

    def __init__(self, lost_connections: int = 0) -> None:
        self.calls: list[tuple[dict[str, Any], str]] = []
        self.lost_connections = lost_connections

    def __call__(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        request = httpx.Request("POST", f"http://tracker{path}")
        self.calls.append((body, headers["Idempotency-Key"]))
        if self.lost_connections:
            self.lost_connections -= 1
            raise httpx.ConnectError("connection reset", request=request)
        items = body["messages"]
        errors = {
            f"messages[{i}].to": ["not a number"] for i, m in enumerate(items) if m["to"] == "bad"
        }
        if errors:
            return httpx.Response(400, json={"errors": errors}, request=request)
        messages = [{"id": f"id-{m['to']}"} for m in items]
        return httpx.Response(
            202, json={"count": len(items), "messages": messages}, request=request
        )


def rows(*numbers: str) -> list[bulk.Row]:
    return [bulk.Row(line, number, "hi") for line, number in enumerate(numbers, 2)]


def test_a_chunk_is_sent_again_without_its_refused_rows() -> None:
    """Refused rows are reported with their reasons; the others are still queued."""
    api = FakeBatchApi()
    outcome = bulk.send_rows(api, rows("1", "bad", "3", "bad", "5"), {}, chunk_size=10)
    assert outcome.accepted == [(2, "id-1"), (4, "id-3"), (6, "id-5")]
    assert [(r.line, r.errors) for r in outcome.refused] == [
        (3, {"to": ["not a number"]}),
        (5, {"to": ["not a number"]}),
    ]
    keys = [key for _body, key in api.calls]
    assert len(keys) == len(set(keys)) == 2  # another body, another key


def test_chunks_are_sent_in_turn_and_counted() -> None:
    """Each chunk is one batch request; the progress callback hears every row."""
    api, settled = FakeBatchApi(), list[int]()
    bulk.send_rows(api, rows(*"12345"), {"priority": "high"}, chunk_size=2, on_chunk=settled.append)
    assert [len(body["messages"]) for body, _key in api.calls] == [2, 2, 1]
    assert settled == [2, 2, 1]
    assert all(m["priority"] == "high" for body, _ in api.calls for m in body["messages"])


def test_a_lost_connection_is_retried_with_the_same_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The retry cannot queue the chunk twice: the service replays the first answer."""
    monkeypatch.setattr(bulk, "RETRY_PAUSE_SECONDS", 0)
    api = FakeBatchApi(lost_connections=2)
    outcome = bulk.send_rows(api, rows("1", "2"), {})
    assert len(outcome.accepted) == 2
    assert len({key for _body, key in api.calls}) == 1
    assert len(api.calls) == 3


def test_an_error_that_is_not_about_items_stops_the_run() -> None:
    """A 401 or 413 is one line naming it, not a list of refused rows."""

    def unauthorised(path: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        request = httpx.Request("POST", f"http://tracker{path}")
        return httpx.Response(401, json={"detail": "a valid API key is required"}, request=request)

    with pytest.raises(bulk.BulkError, match=re.escape("401: a valid API key is required")):
        bulk.send_rows(unauthorised, rows("1"), {})
