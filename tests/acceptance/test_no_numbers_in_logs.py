"""No log line holds a number or a body (#17): a real flow, every JSON log line searched.

`tracker serve --sandbox` (dispatcher, callback receiver, sandbox provider) and the CLI
run as a user runs them, with JSON logs at DEBUG. The flow: sends with the number
written several ways (one, a batch, an Idempotency-Key, metadata naming it), the
sandbox's delivery callbacks, a forged callback naming it, a list filtered by it, an
opt-out and the refused send after it, a body read, an erasure by API and one by CLI,
and a CLI listing. Then every log line of every process is searched for any written
form of the numbers (digits with up to three other characters between them, so
``%20`` and dashes count) and for every body.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import free_port, run_tracker, started
from tracker import logs

NUMBERS = {
    "254712345678": "0712 345 678",
    "254712345679": "+254712345679",
    "254712345680": "254-712-345-680",
    "254712345681": "712345681",
    "254712345682": "0712345682",
}
BODIES = [f"Habari Amina, your code is {code} (zebra-{code})" for code in (4821, 5932, 6043)]
BATCH_BODY = "Order 77 shipped to Kisumu (zebra-batch)"
FINAL = {"delivered", "failed"}  # reached through the sandbox's delivery callback


def _digits_anywhere(msisdn: str) -> re.Pattern[str]:
    """The number's last nine digits with up to three non-digits between any two."""
    return re.compile(r"\D{0,3}".join(msisdn[3:]))


PATTERNS = [_digits_anywhere(msisdn) for msisdn in NUMBERS]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "TRACKER_DATA_DIR": str(tmp_path / "data"),
        "TRACKER_DATABASE_URL": f"sqlite:///{tmp_path / 'tracker.db'}",
        "TRACKER_LOG_FORMAT": "json",
        "TRACKER_LOG_LEVEL": "DEBUG",
        "COLUMNS": "200",
    }


def _cli(env: dict[str, str], lines: list[str], *args: str) -> str:
    """Run a command; its output's log lines are kept for the search, its stdout returned."""
    done = run_tracker(*args, env=env)
    assert done.returncode == 0, done.stderr
    lines.extend((done.stdout + done.stderr).splitlines())
    return done.stdout


@pytest.fixture
def serving(env: dict[str, str]) -> Iterator[tuple[str, dict[str, str], list[str], Any]]:
    """A migrated database, two keys made by the CLI, and a serving tracker with sandbox."""
    lines: list[str] = []
    _cli(env, lines, "db", "upgrade")
    app = _cli(env, lines, "keys", "create", "--name", "app").strip().splitlines()[-1]
    ops = _cli(env, lines, "keys", "create", "--name", "ops", "--scopes", "admin")
    port, sandbox_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    serve = ("serve", "--sandbox", "--port", str(port), "--sandbox-port", str(sandbox_port))
    with started(*serve, env=env, ready_url=f"{url}/readyz") as running:
        keys = {"app": app, "ops": ops.strip().splitlines()[-1]}
        yield url, keys, lines, running


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _send_all(http: httpx.Client, app: dict[str, str]) -> list[str]:
    """Sends naming the first four numbers in their written forms; the ids."""
    forms = list(NUMBERS.values())
    ids = []
    for form, body in zip(forms[:3], BODIES, strict=True):
        sent = http.post(
            "/v1/messages",
            json={"to": form, "message": body, "metadata": {"callback_to": form}},
            headers={**app, "Idempotency-Key": f"key-{form}"},
        )
        assert sent.status_code == 202, sent.text
        ids.append(sent.json()["id"])
    batch = http.post(
        "/v1/messages/batch", json={"messages": [{"to": forms[3], "message": BATCH_BODY}]},
        headers=app,
    )  # fmt: skip
    assert batch.status_code == 202, batch.text
    return [*ids, batch.json()["messages"][0]["id"]]


def _wait_final(http: httpx.Client, app: dict[str, str], ids: list[str]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        states = [http.get(f"/v1/messages/{i}", headers=app).json()["status"] for i in ids]
        if all(s in FINAL for s in states):  # the sandbox fails a few at random
            return
        time.sleep(0.5)
    raise AssertionError(f"no delivery report in time: {states}")


def _privacy_calls(http: httpx.Client, keys: dict[str, str], ids: list[str]) -> None:
    """Forged callback, filtered list, opt-out and refused send, body read, erasure."""
    app, ops = _auth(keys["app"]), _auth(keys["ops"])
    forged = http.post(
        f"/v1/callbacks/kimisms/{ids[0]}/not-a-token",
        json={"contact": "254712345678", "status": "Delivered", "message_id": "x"},
    )
    assert forged.status_code == 404
    listed = http.get("/v1/messages", params={"to": "0712 345 678"}, headers=app)
    assert [m["id"] for m in listed.json()["messages"]] == [ids[0]]
    assert http.post("/v1/opt-outs", json={"to": "0712345682"}, headers=app).status_code == 201
    refused = http.post(
        "/v1/messages", json={"to": "0712345682", "message": BODIES[0]}, headers=app
    )
    assert refused.status_code == 400
    read = http.get(f"/v1/messages/{ids[0]}", params={"include": "body"}, headers=app)
    assert read.json()["body"] == BODIES[0]
    erased = http.post("/v1/erasures", json={"to": "+254 712 345 679"}, headers=ops)
    assert erased.json()["messages_pseudonymised"] == 1


def _log_lines(lines: list[str]) -> list[str]:
    """The JSON log lines among a process's output (the CLI's tables are not logs)."""
    found = []
    for line in lines:
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict) and "event" in parsed:
            found.append(line)
    return found


def test_no_log_line_holds_a_number_or_a_body(
    serving: tuple[str, dict[str, str], list[str], Any], env: dict[str, str]
) -> None:
    """Across the server's and the CLI's logs: no number in any form, no body text."""
    url, keys, lines, running = serving
    with httpx.Client(base_url=url, timeout=10) as http:
        ids = _send_all(http, _auth(keys["app"]))
        _wait_final(http, _auth(keys["app"]), ids)
        _privacy_calls(http, keys, ids)
    cli_env = {**env, "TRACKER_URL": url, "TRACKER_API_KEY": keys["app"]}
    erased = _cli(env, lines, "privacy", "erase", "--to", "254-712-345-680")
    assert re.search(r"messages pseudonymised\s+1", erased), erased
    listed = _cli(cli_env, lines, "messages", "list", "--to", "712345681")
    assert ids[3] in listed
    time.sleep(1)  # the server's last lines reach its log file
    logged = _log_lines(lines + running.output().splitlines())
    events = {json.loads(line)["event"] for line in logged}
    assert {"message_queued", "message_dispatched", "callback_received", "opt_out_added",
            "message_body_read", "erasure_done", "sandbox_callback_posted"} <= events  # fmt: skip
    assert len(logged) > 50  # the flow was logged, at DEBUG, by every part
    for line in logged:
        for pattern in PATTERNS:
            assert not pattern.search(line), line
        for match in logs.PHONE_PATTERN.finditer(line):
            assert "254" + re.sub(r"\D", "", match[0])[-9:] not in NUMBERS, line
        for body in [*BODIES, BATCH_BODY]:
            assert body not in line
            assert "zebra" not in line, line
