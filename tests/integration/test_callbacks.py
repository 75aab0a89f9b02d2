"""The callback receiver: capability URLs, forward-only statuses, receipts, spool."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from structlog.testing import capture_logs

from tests.conftest import SettingsFactory, running
from tests.factories import add_message, count_rows, fetch_message
from tracker import clock, db, metrics, models
from tracker.app import create_app
from tracker.domain import status
from tracker.reports import capability, ingest, plan, reading, statements
from tracker.reports.spool import Spool
from tracker.settings import Settings

PROVIDER_ID = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"
CONTACT = "254712345678"


def report(status: str = "Delivered", **fields: Any) -> dict[str, Any]:
    body = {
        "message_id": PROVIDER_ID,
        "contact": CONTACT,
        "status": status,
        "description": "Message delivered successfully",
    }
    body.update(fields)
    return body


def path_for(settings: Settings, message_id: uuid.UUID) -> str:
    url = capability.callback_url(settings.public_url, settings.callback_keys(), message_id)
    return url.removeprefix(settings.public_url)


async def post(
    client: httpx.AsyncClient, settings: Settings, message_id: uuid.UUID, body: Any
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.post(path_for(settings, message_id), content=content)


async def test_a_delivered_report_moves_a_pending_message_to_delivered(
    client: httpx.AsyncClient, settings: Settings, database: db.Database
) -> None:
    """The report is applied, its raw status kept, its body stored, an event recorded."""
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    response = await post(client, settings, message_id, report())
    assert response.status_code == 200
    assert response.json() == {"received": True, "outcome": "applied"}
    message = await fetch_message(database, message_id)
    assert message.status == status.Status.DELIVERED
    assert message.provider_status == "Delivered"
    assert message.provider_description == "Message delivered successfully"
    assert message.final_at is not None
    assert await count_rows(database, models.CallbackReceipt, message_id) == 1
    assert await count_rows(database, models.MessageEvent, message_id) == 1


@pytest.mark.parametrize("word", ["Failed", "Rejected", "Undelivered", "Expired", "FAILED"])
async def test_failure_words_mark_the_message_failed(
    client: httpx.AsyncClient, settings: Settings, database: db.Database, word: str
) -> None:
    """Every failure word the provider may use ends as failed, raw text kept."""
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    response = await post(client, settings, message_id, report(word, description="x"))
    assert response.json()["outcome"] == "applied"
    message = await fetch_message(database, message_id)
    assert message.status == status.Status.FAILED
    assert message.provider_status == word


@pytest.mark.parametrize(
    ("word", "outcome"),
    [
        ("Pending", "interim"),
        ("Sent", "interim"),
        ("Buffered", "interim"),
        ("Zorp", "unknown_status"),
    ],
)
async def test_non_final_and_unknown_words_are_recorded_without_moving(
    client: httpx.AsyncClient, settings: Settings, database: db.Database, word: str, outcome: str
) -> None:
    """Interim and unknown statuses answer 200, are kept as events, and move nothing;
    the message shows the provider's latest words."""
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    with capture_logs() as captured:
        response = await post(client, settings, message_id, report(word, description="hm"))
    assert response.status_code == 200
    assert response.json()["outcome"] == outcome
    message = await fetch_message(database, message_id)
    assert message.status == status.Status.PENDING
    assert (message.provider_status, message.provider_description) == (word, "hm")
    assert await count_rows(database, models.MessageEvent, message_id) == 1
    warned = any(e["event"] == "callback_unknown_status" for e in captured)
    assert warned == (outcome == "unknown_status")


async def test_a_duplicate_report_changes_nothing(
    client: httpx.AsyncClient, settings: Settings, database: db.Database
) -> None:
    """The same body twice: 200 both times, one receipt, one event."""
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    first = await post(client, settings, message_id, report())
    second = await post(client, settings, message_id, report())
    assert first.json()["outcome"] == "applied"
    assert second.json()["outcome"] == "duplicate"
    assert await count_rows(database, models.CallbackReceipt, message_id) == 1
    assert await count_rows(database, models.MessageEvent, message_id) == 1


@pytest.mark.parametrize(
    ("body", "code"),
    [(report(contact="254799999999"), 409), (b'{"status": ""}', 400)],
)
async def test_a_refused_report_posted_again_is_refused_again(
    client: httpx.AsyncClient,
    settings: Settings,
    database: db.Database,
    body: dict[str, Any] | bytes,
    code: int,
) -> None:
    """A resent mismatch or malformed body gets the same refusal, not a duplicate's 200."""
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    first = await post(client, settings, message_id, body)
    again = await post(client, settings, message_id, body)
    assert (first.status_code, again.status_code) == (code, code)
    assert await count_rows(database, models.CallbackReceipt, message_id) == 1
    assert (await fetch_message(database, message_id)).status == status.Status.PENDING


async def test_a_stale_interim_report_after_the_final_one_does_not_move_back(
    client: httpx.AsyncClient, settings: Settings, database: db.Database
) -> None:
    """Out-of-order reports are recorded but the status only moves forward."""
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    await post(client, settings, message_id, report())
    late = await post(client, settings, message_id, report("Pending", description="Initiated"))
    assert late.json()["outcome"] == "interim"
    message = await fetch_message(database, message_id)
    assert message.status == status.Status.DELIVERED
    assert message.provider_status == "Delivered"


async def test_a_late_delivered_wins_over_failed_but_not_the_reverse(
    client: httpx.AsyncClient, settings: Settings, database: db.Database
) -> None:
    """Late delivery is real: delivered overrides failed; failed never overrides delivered."""
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    await post(client, settings, message_id, report("Failed"))
    assert (await post(client, settings, message_id, report())).json()["outcome"] == "applied"
    stale = await post(client, settings, message_id, report("Undelivered"))
    assert stale.json()["outcome"] == "stale"
    assert (await fetch_message(database, message_id)).status == status.Status.DELIVERED


async def test_a_report_for_a_cancelled_message_is_stale(
    client: httpx.AsyncClient, settings: Settings, database: db.Database
) -> None:
    """Nothing overrides cancelled, rejected or expired."""
    message_id = await add_message(database, status=status.Status.CANCELLED)
    response = await post(client, settings, message_id, report())
    assert response.json()["outcome"] == "stale"
    assert (await fetch_message(database, message_id)).status == status.Status.CANCELLED


async def test_a_report_that_beats_the_send_response_sets_the_provider_id(
    client: httpx.AsyncClient, settings: Settings, database: db.Database
) -> None:
    """Race: the message is still `sending` with no provider id; the report completes it."""
    message_id = await add_message(database, status=status.Status.SENDING)
    response = await post(client, settings, message_id, report())
    assert response.json()["outcome"] == "applied"
    message = await fetch_message(database, message_id)
    assert message.status == status.Status.DELIVERED
    assert message.provider_message_id == PROVIDER_ID


async def test_a_batch_that_moves_a_message_then_learns_its_provider_id_keeps_both(
    database: db.Database,
) -> None:
    """One group commit: a final report without an id, then an interim one with it."""
    message_id = await add_message(database, status=status.Status.SENDING)
    anonymous = {k: v for k, v in report().items() if k != "message_id"}
    bodies = [json.dumps(anonymous), json.dumps(report("Pending"))]
    async with database.write() as session:
        outcomes = await statements.apply_receipts(
            session, [reading.Receipt(message_id, b, "127.0.0.1", clock.utcnow()) for b in bodies]
        )
    assert outcomes == [plan.Outcome.APPLIED, plan.Outcome.INTERIM]
    message = await fetch_message(database, message_id)
    assert message.status == status.Status.DELIVERED
    assert message.provider_message_id == PROVIDER_ID
    assert message.provider_status == "Delivered"  # the interim words do not replace it


async def test_interim_reports_in_one_batch_leave_the_last_words_and_learn_the_id(
    database: db.Database,
) -> None:
    """Two interim reports for one message in a group commit: one UPDATE, the later words."""
    message_id = await add_message(database, status=status.Status.SENDING)
    sent = {**report("Sent"), "description": "sent to network"}
    anonymous_buffered = {"status": "Buffered", "description": "phone off", "contact": CONTACT}
    bodies = [json.dumps(sent), json.dumps(anonymous_buffered)]
    async with database.write() as session:
        outcomes = await statements.apply_receipts(
            session, [reading.Receipt(message_id, b, "127.0.0.1", clock.utcnow()) for b in bodies]
        )
    assert outcomes == [plan.Outcome.INTERIM, plan.Outcome.INTERIM]
    message = await fetch_message(database, message_id)
    assert message.status == status.Status.SENDING
    assert message.provider_message_id == PROVIDER_ID
    assert (message.provider_status, message.provider_description) == ("Buffered", "phone off")


@pytest.mark.parametrize(
    "fields", [{"contact": "254799999999"}, {"message_id": "another-provider-id"}]
)
async def test_a_report_contradicting_the_message_is_recorded_and_refused(
    client: httpx.AsyncClient, settings: Settings, database: db.Database, fields: dict[str, str]
) -> None:
    """Another contact or provider id: 409, message unchanged, receipt kept as evidence."""
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    response = await post(client, settings, message_id, report(**fields))
    assert response.status_code == 409
    assert (await fetch_message(database, message_id)).status == status.Status.PENDING
    async with database.read() as session:
        outcome = await session.scalar(
            select(models.CallbackReceipt.outcome).where(
                models.CallbackReceipt.message_id == message_id
            )
        )
    assert outcome == "mismatch"


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b"{}", b'{"status": 5}', b'{"status": ""}', b"\xff"]
)
async def test_a_malformed_body_is_a_400_and_changes_nothing(
    client: httpx.AsyncClient, settings: Settings, database: db.Database, body: bytes
) -> None:
    """A body that is not a delivery report is refused, never a 500."""
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    response = await post(client, settings, message_id, body)
    assert response.status_code == 400
    assert (await fetch_message(database, message_id)).status == status.Status.PENDING


async def test_a_body_over_16_kb_is_413(
    client: httpx.AsyncClient, settings: Settings, database: db.Database
) -> None:
    """Callback bodies are bounded."""
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    response = await post(client, settings, message_id, report(description="x" * 20_000))
    assert response.status_code == 413


async def test_a_bad_token_is_404_counted_and_stores_nothing(
    client: httpx.AsyncClient, settings: Settings, database: db.Database
) -> None:
    """Forged, swapped or malformed capability URLs (any other path shape) change nothing."""
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    other_id = await add_message(database)
    before = metrics.CALLBACKS.labels(outcome="not_found")._value.get()
    good_path = path_for(settings, message_id)
    token = good_path.rsplit("/", 1)[1]
    paths = [
        good_path[:-2] + "xx",
        f"/v1/callbacks/kimisms/{other_id}/{token}",
        f"/v1/callbacks/kimisms/not-a-uuid/{token}",
        f"/v1/callbacks/kimisms/{message_id}/nokey.{token.split('.')[1]}",
        f"{good_path}/extra",  # the endpoint takes only {id}/{token}
        f"/v1/callbacks/kimisms/{message_id}/",
        good_path + "/",
    ]
    for path in paths:
        response = await client.post(path, content=json.dumps(report()))
        assert response.status_code == 404, path
        assert response.json() == {"detail": "not found"}
    assert metrics.CALLBACKS.labels(outcome="not_found")._value.get() == before + len(paths)
    assert (await fetch_message(database, message_id)).status == status.Status.PENDING
    assert await count_rows(database, models.CallbackReceipt, message_id) == 0


async def test_other_methods_on_a_callback_url_are_405(
    client: httpx.AsyncClient, settings: Settings, database: db.Database
) -> None:
    """Only POSTs take the fast path; a GET still gets the route's 405 and changes nothing."""
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    response = await client.get(path_for(settings, message_id))
    assert response.status_code == 405
    assert (await fetch_message(database, message_id)).status == status.Status.PENDING


async def test_a_callback_answer_carries_a_request_id(
    client: httpx.AsyncClient, settings: Settings, database: db.Database
) -> None:
    """A safe caller-sent X-Request-ID is echoed (and logged); otherwise one is made up."""
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    path = path_for(settings, message_id)
    with capture_logs() as captured:
        echoed = await client.post(
            path, content=json.dumps(report()), headers={"X-Request-ID": "kimisms-42"}
        )
    assert echoed.headers["x-request-id"] == "kimisms-42"
    assert [e["request_id"] for e in captured if e["event"] == "callback_received"] == [
        "kimisms-42"
    ]
    made_up = await client.post(
        path, content=json.dumps(report()), headers={"X-Request-ID": "no spaces allowed"}
    )
    assert len(made_up.headers["x-request-id"]) == 32
    assert made_up.json() == {"received": True, "outcome": "duplicate"}


async def test_a_body_declared_over_the_limit_is_refused_before_it_is_read(
    client: httpx.AsyncClient, settings: Settings, database: db.Database
) -> None:
    """A Content-Length past 16 KB is a 413 at once, and a chunked body past it too."""
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    path = path_for(settings, message_id)

    async def chunks() -> Any:
        for _ in range(20):
            yield b"x" * 1024

    response = await client.post(path, content=chunks())
    assert response.status_code == 413
    assert response.json() == {"detail": "callback body too large"}
    declared = await client.post(path, content=b"{}", headers={"Content-Length": "20000"})
    assert declared.status_code == 413
    assert await count_rows(database, models.CallbackReceipt, message_id) == 0


async def test_an_unexpected_error_is_a_logged_500_with_the_request_id(
    settings: Settings, database: db.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug on the fast path answers a bare 500 (no traceback) and is logged once."""
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    app = create_app(settings)

    async def broken(_receipt: reading.Receipt) -> ingest.Result:
        raise RuntimeError("bug")

    async with running(app) as http:
        monkeypatch.setattr(app.state.ingester, "submit", broken)
        with capture_logs() as captured:
            response = await http.post(path_for(settings, message_id), content=b"{}")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error"}
    errors = [e for e in captured if e["event"] == "unhandled_exception"]
    assert [e["request_id"] for e in errors] == [response.headers["x-request-id"]]
    assert "bug" not in response.text


async def test_urls_signed_with_a_rotated_out_key_still_verify(
    make_settings: SettingsFactory, database_url: str, database: db.Database
) -> None:
    """A URL from the old key works while that key is still listed; new URLs use the new key."""
    old = make_settings(database_url=database_url, callback_secrets="old:" + "o" * 24)
    rotated = make_settings(
        database_url=database_url, callback_secrets=f"new:{'n' * 24},old:{'o' * 24}"
    )
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    old_path = path_for(old, message_id)
    assert path_for(rotated, message_id).rsplit("/", 1)[1].startswith("new.")
    async with running(create_app(rotated)) as http:
        response = await http.post(old_path, content=json.dumps(report()))
    assert response.status_code == 200
    dropped = make_settings(database_url=database_url, callback_secrets="new:" + "n" * 24)
    async with running(create_app(dropped)) as http:
        response = await http.post(old_path, content=json.dumps(report("Failed")))
    assert response.status_code == 404


async def test_the_token_never_reaches_a_log_line(
    client: httpx.AsyncClient, settings: Settings, database: db.Database
) -> None:
    """Neither the request line nor the callback line carries the capability token."""
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    path = path_for(settings, message_id)
    token = path.rsplit("/", 1)[1]
    with capture_logs() as captured:
        await client.post(path, content=json.dumps(report()))
    events = [e["event"] for e in captured]
    assert events.count("callback_received") == 1
    assert "http_request" not in events  # one canonical line per callback, not two
    assert token.split(".")[1] not in repr(captured)


async def test_concurrent_callbacks_are_committed_in_shared_batches(
    client: httpx.AsyncClient, settings: Settings, database: db.Database
) -> None:
    """Group commit: 100 concurrent callbacks all applied, in fewer transactions than requests."""
    ids = [
        await add_message(database, provider_message_id=f"p-{i}", contact=CONTACT)
        for i in range(100)
    ]
    before = metrics.CALLBACK_BATCH_SIZE._sum.get()
    batches_before = sum(b.get() for b in metrics.CALLBACK_BATCH_SIZE._buckets)
    responses = await asyncio.gather(
        *(post(client, settings, i, report(message_id=f"p-{n}")) for n, i in enumerate(ids))
    )
    assert {r.status_code for r in responses} == {200}
    assert metrics.CALLBACK_BATCH_SIZE._sum.get() - before == 100
    batches = sum(b.get() for b in metrics.CALLBACK_BATCH_SIZE._buckets) - batches_before
    assert batches < 100
    async with database.read() as session:
        delivered = await session.scalar(
            select(func.count()).where(models.Message.status == status.Status.DELIVERED)
        )
    assert delivered == 100


async def test_an_unreachable_database_spools_and_replay_applies_once(
    settings: Settings, database: db.Database, tmp_path: Path
) -> None:
    """Answered receipts survive an outage in the fsynced spool and apply exactly once later."""
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    spool = Spool(tmp_path / "spool.jsonl")
    broken = db.Database("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    ingester = ingest.Ingester(broken, spool, deadline_seconds=1.0)
    await ingester.start(replay_interval=3600)
    try:
        receipt = reading.Receipt(message_id, json.dumps(report()), "127.0.0.1", clock.utcnow())
        assert await ingester.submit(receipt) == ingest.SPOOLED
        assert await ingester.submit(receipt) == ingest.SPOOLED  # breaker open now
    finally:
        await ingester.stop()
        await broken.dispose()
    assert spool.backlog() == 2
    assert await ingest.replay(database, spool) == 2
    assert spool.backlog() == 0
    assert (await fetch_message(database, message_id)).status == status.Status.DELIVERED
    assert await count_rows(database, models.CallbackReceipt, message_id) == 1
    assert await ingest.replay(database, spool) == 0


async def test_the_servers_replayer_applies_the_spool_once_the_database_answers(
    database: db.Database, tmp_path: Path
) -> None:
    """No operator needed: the running receiver replays what an outage left spooled."""
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    spool = Spool(tmp_path / "spool.jsonl")
    spool.append([reading.Receipt(message_id, json.dumps(report()), None, clock.utcnow())])
    ingester = ingest.Ingester(database, spool, deadline_seconds=1.0)
    await ingester.start(replay_interval=0.05)
    try:
        for _ in range(100):
            if spool.backlog() == 0:
                break
            await asyncio.sleep(0.05)
    finally:
        await ingester.stop()
    assert spool.backlog() == 0
    assert (await fetch_message(database, message_id)).status == status.Status.DELIVERED
    assert await count_rows(database, models.CallbackReceipt, message_id) == 1


def test_a_torn_spool_line_is_set_aside_and_the_next_append_starts_a_line(
    tmp_path: Path,
) -> None:
    """A crash mid-append leaves a partial line: later appends stay readable, the torn
    text is quarantined as it was, and the rest of the spool replays."""
    spool = Spool(tmp_path / "spool.jsonl")
    first, second = (reading.Receipt(uuid.uuid4(), "{}", None, clock.utcnow()) for _ in range(2))
    spool.append([first])
    with spool.path.open("a") as handle:
        handle.write('{"message_id": "trunc')
    spool.append([second])
    [claimed] = spool.claim()
    assert spool.read(claimed) == [first, second]
    assert spool.quarantined() == 1
    assert '"raw":"{\\"message_id\\": \\"trunc"' in spool.quarantine_path.read_text()


def test_an_append_blocked_by_a_claim_writes_to_the_new_spool_file(tmp_path: Path) -> None:
    """Server and `tracker callbacks replay` share the spool: an append that waited for
    the lock while the file was claimed writes to a fresh file, not the claimed one."""
    spool = Spool(tmp_path / "spool.jsonl")
    receipt = reading.Receipt(uuid.uuid4(), "{}", None, clock.utcnow())
    spool.append([receipt])
    holder = os.open(spool.path, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)  # as a claim in another process holds it
    other_process = Spool(spool.path)  # its own thread lock, as another process has
    appending = threading.Thread(target=other_process.append, args=([receipt],))
    appending.start()
    time.sleep(0.2)  # the append has opened the file and waits for the lock
    claimed = spool.path.rename(spool.path.with_name(f"{spool.path.name}.1.replaying"))
    os.close(holder)
    appending.join(5)
    assert spool.read(claimed) == [receipt]
    assert spool.read(spool.path) == [receipt]


async def test_extra_and_deeply_nested_fields_stay_in_the_raw_receipt_only(
    client: httpx.AsyncClient, settings: Settings, database: db.Database
) -> None:
    """The event holds the documented fields; the message stays readable through the API."""
    message_id = await add_message(database, provider_message_id=PROVIDER_ID)
    nested: Any = "x"
    for _ in range(400):
        nested = [nested]
    body = json.dumps(report(extra=nested))
    assert (await post(client, settings, message_id, body.encode())).status_code == 200
    async with database.read() as session:
        payload = await session.scalar(
            select(models.MessageEvent.payload).where(models.MessageEvent.message_id == message_id)
        )
        raw = await session.scalar(
            select(models.CallbackReceipt.body).where(
                models.CallbackReceipt.message_id == message_id
            )
        )
    assert payload == report()
    assert raw == body
