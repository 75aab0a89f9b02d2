"""The ops commands against a running `tracker serve --no-dispatcher`, as subprocesses.

One server (SQLite, migrated) for the module; every command runs as a user
runs it, with TRACKER_URL and TRACKER_API_KEY in its environment.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.processes import free_port, run_tracker, started


@dataclass(frozen=True)
class Server:
    env: dict[str, str]  # TRACKER_URL and TRACKER_API_KEY (send,read) included
    admin_key: str
    workdir: Path


def _key(env: dict[str, str], name: str, scopes: str) -> str:
    created = run_tracker("keys", "create", "--name", name, "--scopes", scopes, env=env)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("ops-cli")
    env = {
        "TRACKER_DATA_DIR": str(workdir / "data"),
        "TRACKER_LOG_FORMAT": "json",
        "TRACKER_DATABASE_URL": f"sqlite:///{workdir / 'tracker.db'}",
        "COLUMNS": "200",  # rich tables at full width, whatever the test runner's terminal
    }
    upgraded = run_tracker("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    key, admin = _key(env, "billing", "send,read"), _key(env, "ops", "admin")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = ("serve", "--no-dispatcher", "--port", str(port))
    with started(*serve, env=env, ready_url=f"{url}/readyz"):
        yield Server({**env, "TRACKER_URL": url, "TRACKER_API_KEY": key}, admin, workdir)


def tracker(server: Server, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_tracker(*args, env={**server.env, **env})


def sent_id(server: Server, to: str, text: str, *extra: str) -> str:
    done = tracker(server, "send", "--to", to, "--message", text, "--json", *extra)
    assert done.returncode == 0, done.stderr
    message_id: str = json.loads(done.stdout)["id"]
    return message_id


def test_send_queues_one_message_and_prints_its_id(server: Server) -> None:
    """`send --to --message` answers with the queued id, the normalised number, the parts."""
    done = tracker(server, "send", "--to", "0712 345 678", "--message", "Your code is 4321")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("queued ")
    assert "to 254712345678 (1 part, gsm7)" in done.stdout


def test_send_csv_queues_the_good_rows_and_reports_the_refused_ones(server: Server) -> None:
    """Bulk through the batch API: the valid rows are queued, each refusal has its reason."""
    rows = "to,name\n0712345001,Amina\n0799,Bad\n+254712345002,Baraka\n0712345003,Chebet\n"
    path = server.workdir / "people.csv"
    path.write_text(rows, encoding="utf-8")
    template = "Habari {name}, your order is ready"
    done = tracker(server, "send", "--csv", str(path), "--message", template, "--chunk-size", "2")
    assert done.returncode == 1, done.stderr  # some rows refused
    assert "accepted 3 of 4 rows, refused 1" in done.stdout
    assert "'0799' is not a valid Kenyan mobile number" in done.stdout
    listed = tracker(server, "messages", "list", "--to", "0712345002", "--json")
    assert len(json.loads(listed.stdout)["messages"]) == 1


def test_send_csv_json_lists_accepted_and_refused_rows_by_line(server: Server) -> None:
    """--json gives the file's line numbers: accepted ones with ids, refused ones with errors."""
    path = server.workdir / "two.csv"
    path.write_text("to,who\n0712345010,A\nnope,B\n", encoding="utf-8")
    done = tracker(server, "send", "--csv", str(path), "--message", "Hi {who}", "--json")
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert [row["line"] for row in result["accepted"]] == [2]
    assert result["refused"] == [
        {"line": 3, "to": "nope", "errors": {"to": ["'nope' is not a phone number"]}}
    ]


def test_send_csv_without_a_needed_column_sends_nothing(server: Server) -> None:
    """A template naming a missing column stops before any request, naming the column."""
    path = server.workdir / "columns.csv"
    path.write_text("to,name\n0712345011,A\n", encoding="utf-8")
    done = tracker(server, "send", "--csv", str(path), "--message", "Hi {nmae}")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: columns.csv has no column 'nmae' (it has: name, to)"


def test_messages_list_filters_and_prints_a_table_or_json(server: Server) -> None:
    """Filters reach the API; the table names the message; --json is the API's page."""
    message_id = sent_id(server, "0712345020", "filtered", "--reference", "inv-20")
    table = tracker(server, "messages", "list", "--reference", "inv-20")
    assert table.returncode == 0, table.stderr
    assert message_id in table.stdout
    assert "queued" in table.stdout
    page = json.loads(tracker(server, "messages", "list", "--status", "queued", "--json").stdout)
    assert message_id in [m["id"] for m in page["messages"]]
    none = tracker(server, "messages", "list", "--status", "delivered", "--json")
    assert json.loads(none.stdout) == {"messages": [], "next_cursor": None}


def test_messages_list_pages_with_the_cursor_it_prints(server: Server) -> None:
    """--limit shows one page and the --cursor for the next; following it continues."""
    first = tracker(server, "messages", "list", "--limit", "1", "--json")
    cursor = json.loads(first.stdout)["next_cursor"]
    assert cursor
    table = tracker(server, "messages", "list", "--limit", "1")
    assert f"more: --cursor {cursor}" in table.stdout
    second = tracker(server, "messages", "list", "--limit", "1", "--cursor", cursor, "--json")
    assert json.loads(second.stdout)["messages"] != json.loads(first.stdout)["messages"]


def test_messages_show_prints_the_message_and_its_timeline(server: Server) -> None:
    """`messages show ID`: fields, then each event with who changed what."""
    message_id = sent_id(server, "0712345030", "shown")
    done = tracker(server, "messages", "show", message_id)
    assert done.returncode == 0, done.stderr
    assert "254712345030" in done.stdout
    assert "timeline" in done.stdout
    assert "→ queued" in done.stdout
    events = json.loads(tracker(server, "messages", "show", message_id, "--json").stdout)["events"]
    assert [(e["source"], e["to_status"]) for e in events] == [("api", "queued")]


def test_stats_prints_counts_and_the_queue(server: Server) -> None:
    """`stats` shows the window's counts and the queue; --json is the API's answer."""
    sent_id(server, "0712345040", "counted")
    table = tracker(server, "stats", "--window", "1h")
    assert table.returncode == 0, table.stderr
    assert "queue depth (due now)" in table.stdout
    stats = json.loads(tracker(server, "stats", "--json").stdout)
    assert stats["counts"]["queued"] >= 1
    assert stats["queue"]["depth"] == stats["counts"]["queued"]
    admin = tracker(server, "stats", "--json", "--key", server.admin_key)
    assert json.loads(admin.stdout)["client"] is None


def test_stats_shows_a_clients_quota_counts(server: Server) -> None:
    """A client's key sees its admission counts against its limits; admin's table has none."""
    sent_id(server, "0712345041", "counted against the quota")
    used = json.loads(tracker(server, "stats", "--json").stdout)["quota"]["daily_cap"]["used"]
    rows = [" ".join(line.split()) for line in tracker(server, "stats").stdout.splitlines()]
    assert f"accepted today (Nairobi) {used:,} of no limit" in rows  # plain in a pipe
    admin = tracker(server, "stats", "--key", server.admin_key).stdout
    assert "accepted today" not in admin


def test_watch_once_prints_the_latest_messages(server: Server) -> None:
    """`watch --once` draws the live view a single time and exits."""
    message_id = sent_id(server, "0712345050", "watched")
    done = tracker(server, "watch", "--once", "--limit", "5")
    assert done.returncode == 0, done.stderr
    assert "last 15 min:" in done.stdout
    assert message_id in done.stdout


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (("stats",), {"TRACKER_URL": "http://127.0.0.1:9"}, "cannot reach the tracker"),
        (("stats",), {"TRACKER_API_KEY": "kt_not-a-key"}, "401: a valid API key is required"),
        (("stats",), {"TRACKER_API_KEY": ""}, "no API key"),
        (("send", "--to", "0712", "--message", "x"), {}, "400: to: '0712' is not a valid"),
        (("messages", "list", "--to", "12"), {}, "400: to:"),
        (("messages", "show", "00000000-0000-0000-0000-000000000000"), {}, "404: message not"),
        (("stats", "--window", "forever"), {}, "400: window:"),
        (("send", "--csv", "/nonexistent.csv", "--message", "x"), {}, "cannot read"),
    ],
)
def test_errors_are_one_line_on_stderr_and_exit_2(
    server: Server, args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    """Connection refused, bad key, field errors, 404: one clear line, status 2, no traceback."""
    done = tracker(server, *args, **env)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ")
    assert expected in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


BOX_DRAWING = set("─━│┃┌┐└┘┏┓┗┛┡┩╇┳┻╋├┤┬┴┼")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_piped_tables_are_plain_text_with_full_ids(server: Server) -> None:
    """Not a terminal: no box drawing, no colour, nothing cut, whatever COLUMNS says."""
    message_id = sent_id(server, "0712345060", "piped", "--reference", "pipe-60")
    for args in (
        ("messages", "list", "--limit", "3"),
        ("stats",),
        ("messages", "show", message_id),
    ):
        done = tracker(server, *args, COLUMNS="40")
        assert done.returncode == 0, done.stderr
        assert not BOX_DRAWING & set(done.stdout), done.stdout
        assert "\x1b[" not in done.stdout
    listed = tracker(server, "messages", "list", "--reference", "pipe-60", COLUMNS="40").stdout
    header, row = listed.splitlines()[:2]
    assert header.split() == [
        "created",
        "(UTC)",
        "id",
        "to",
        "status",
        "parts",
        "client",
        "reference",
    ]
    assert row.split()[2:] == [message_id, "254712345060", "queued", "1", "billing", "pipe-60"]


def test_tables_fit_an_80_column_terminal_with_full_ids(server: Server) -> None:
    """On a terminal 80 wide, `messages list`, `stats` and `show` stay within it, ids whole."""
    message_id = sent_id(server, "0712345061", "narrow")
    terminal = {"COLUMNS": "80", "FORCE_COLOR": "1", "NO_COLOR": "1"}
    for args in (
        ("messages", "list", "--limit", "5"),
        ("stats",),
        ("messages", "show", message_id),
    ):
        done = tracker(server, *args, **terminal)
        assert done.returncode == 0, done.stderr
        lines = ANSI.sub("", done.stdout).splitlines()
        table = [line for line in lines if not line.startswith("more: --cursor ")]  # copied whole
        assert max(len(line) for line in table) <= 80, done.stdout
        assert message_id in done.stdout or args == ("stats",)
    assert BOX_DRAWING & set(done.stdout)  # a terminal still gets its tables


def test_messages_show_of_something_else_says_it_is_not_a_message_id(server: Server) -> None:
    """`messages show nope`: one line saying so, not the API's bare 404."""
    done = tracker(server, "messages", "show", "nope")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: 'nope' is not a message id (a UUID, as `tracker messages list` shows)"
    )


def test_send_takes_validity_schedule_metadata_and_an_idempotency_key(server: Server) -> None:
    """--valid-for, --send-at, --metadata reach the message; the same key twice is one message."""
    send_at = "2030-01-01T08:00:00+03:00"
    args = ("--valid-for", "2h", "--send-at", send_at, "--metadata", '{"order": 42}')
    first = sent_id(server, "0712345070", "later", *args, "--idempotency-key", "op-70")
    again = sent_id(server, "0712345070", "later", *args, "--idempotency-key", "op-70")
    assert again == first
    shown = json.loads(tracker(server, "messages", "show", first, "--json").stdout)
    assert shown["metadata"] == {"order": 42}
    assert shown["send_at"].startswith("2030-01-01T05:00:00")
    assert shown["expires_at"].startswith("2030-01-01T07:00:00")
    bad = tracker(server, "send", "--to", "0712345070", "--message", "x", "--metadata", "[1]")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: --metadata must be a JSON object")


def test_send_csv_reads_semicolons_a_bom_and_refuses_empty_placeholders(server: Server) -> None:
    """A spreadsheet's ';' and BOM work; a row with an empty {order} is refused by its line."""
    path = server.workdir / "excel.csv"
    rows = "to;order\n0712345080;A-1\n0712345081;\n0712345082;B-2\n"
    path.write_bytes(("\ufeff" + rows).encode())
    done = tracker(server, "send", "--csv", str(path), "--message", "your order {order} is ready")
    assert done.returncode == 1, done.stderr
    assert "accepted 2 of 3 rows, refused 1" in done.stdout
    refused = [line.split() for line in done.stdout.splitlines() if "0712345081" in line]
    assert refused == [["3", "0712345081", "message:", "column", "'order'", "is", "empty"]]
    listed = tracker(server, "messages", "list", "--to", "0712345082", "--json")
    [message] = json.loads(listed.stdout)["messages"]
    assert message["status"] == "queued"
