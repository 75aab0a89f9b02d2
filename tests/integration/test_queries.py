"""GET /v1/messages and GET /v1/stats: filters, keyset pages, scoping, arithmetic."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from tests.conftest import SettingsFactory, running
from tests.provider_loop import dispatching, loop, sandbox_config, settled, wait_for
from tracker import clock, db, models
from tracker.app import create_app
from tracker.domain import status
from tracker.ops import queries

RANK = status.RANK  # the helpers take a ``status`` keyword, which shadows the module

Status = status.Status
OVERDUE_SECONDS = 3600
Keys = dict[str, dict[str, str]]


async def add(
    database: db.Database,
    *,
    status: Status = Status.QUEUED,
    ago: float = 60,
    **values: Any,
) -> uuid.UUID:
    """One message created ``ago`` seconds ago; ``values`` set any column."""
    created = clock.utcnow() - dt.timedelta(seconds=ago)
    row: dict[str, Any] = {
        "id": models.new_id(),
        "client": "app",
        "sender_name": "KIMISMS",
        "contact": "254712345678",
        "body": "hello",
        "segments": 1,
        "encoding": "gsm7",
        "priority": 1,
        "status": status.value,
        "rank": RANK[status],
        "next_attempt_at": created,
        "created_at": created,
        "updated_at": created,
    }
    row.update(values)
    async with database.write() as session:
        session.add(models.Message(**row))
    message_id: uuid.UUID = row["id"]
    return message_id


@pytest.fixture
async def http(
    make_settings: SettingsFactory, database_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(database_url=database_url, dlr_overdue_seconds=OVERDUE_SECONDS)
    async with running(create_app(settings)) as client:
        yield client


@pytest.fixture
async def keys(make_key: Callable[..., Any]) -> Keys:
    """Authorization headers: ``app`` and ``other`` (read), ``ops`` (admin)."""
    made = {
        "app": await make_key("app", "send,read"),
        "other": await make_key("other", "read"),
        "ops": await make_key("ops", "admin"),
    }
    return {name: {"Authorization": f"Bearer {key}"} for name, key in made.items()}


def ids_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["messages"]]


@pytest.fixture
async def labelled(database: db.Database) -> dict[str, str]:
    """One message per filter, each distinct in exactly that respect."""
    hour, now = dt.timedelta(hours=1), clock.utcnow()
    found = {
        "plain": await add(database),
        "delivered": await add(
            database, status=Status.DELIVERED, provider_message_id="p-1", final_at=now
        ),
        "failed": await add(database, status=Status.FAILED, final_at=now),
        "to": await add(database, contact="254722000001"),
        "reference": await add(database, reference="order-7"),
        "sender": await add(database, sender_name="ALERTS"),
        "client": await add(database, client="other"),
        "old": await add(database, ago=3 * 86_400),
        "overdue": await add(database, status=Status.PENDING, accepted_at=now - 2 * hour),
        "waiting": await add(database, status=Status.PENDING, accepted_at=now - hour / 2),
    }
    return {label: str(message_id) for label, message_id in found.items()}


EVERYTHING = {"plain", "delivered", "failed", "to", "reference", "sender", "client", "old"}
EVERYTHING |= {"overdue", "waiting"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=delivered", {"delivered"}),
        ("status=delivered&status=failed", {"delivered", "failed"}),
        ("to=0722000001", {"to"}),
        ("to=%2B254722000001", {"to"}),
        ("to=722000001", {"to"}),
        ("to=254%20722%20000%20001", {"to"}),
        ("reference=order-7", {"reference"}),
        ("sender_name=ALERTS", {"sender"}),
        ("client=other", {"client"}),
        ("provider_message_id=p-1", {"delivered"}),
        ("created_before={day_ago}", {"old"}),
        ("created_after={day_ago}", EVERYTHING - {"old"}),
        ("overdue=true", {"overdue"}),
        ("overdue=false", EVERYTHING - {"overdue"}),
        ("status=pending&overdue=false", {"waiting"}),
        ("", EVERYTHING),
    ],
)
async def test_each_filter_selects_exactly_its_messages(
    http: httpx.AsyncClient, keys: Keys, labelled: dict[str, str], query: str, expected: set[str]
) -> None:
    """Every filter (and their AND) returns exactly the messages it describes."""
    day_ago = (clock.utcnow() - dt.timedelta(days=1)).isoformat().replace("+", "%2B")
    response = await http.get(f"/v1/messages?{query.format(day_ago=day_ago)}", headers=keys["ops"])
    assert set(ids_of(response)) == {labelled[label] for label in expected}


async def test_a_date_time_whose_plus_arrived_as_a_space_still_reads(
    http: httpx.AsyncClient, keys: Keys, labelled: dict[str, str]
) -> None:
    """created_before=...T..:..:.. 03:00 (an unencoded '+') means +03:00."""
    stamp = (clock.utcnow() - dt.timedelta(days=1)).astimezone(dt.timezone(dt.timedelta(hours=3)))
    text = stamp.isoformat().replace("+", " ")
    response = await http.get("/v1/messages", params={"created_before": text}, headers=keys["ops"])
    assert ids_of(response) == [labelled["old"]]


async def test_list_items_carry_the_overdue_flag_and_never_the_body(
    http: httpx.AsyncClient, keys: Keys, labelled: dict[str, str]
) -> None:
    """Overdue is computed per item (pending and unreported too long); bodies stay private."""
    response = await http.get("/v1/messages", headers=keys["ops"])
    flags = {item["id"]: item["overdue"] for item in response.json()["messages"]}
    assert [i for i, flag in flags.items() if flag] == [labelled["overdue"]]
    assert all("body" not in item for item in response.json()["messages"])


async def test_pages_neither_skip_nor_repeat_rows_while_new_ones_arrive(
    http: httpx.AsyncClient, keys: Keys, database: db.Database
) -> None:
    """Keyset pages over ties in created_at stay exact while newer rows are inserted."""
    now = clock.utcnow()
    batch_time = now - dt.timedelta(seconds=500)  # a batch: one created_at for many rows
    created = {await add(database, created_at=batch_time): batch_time for _ in range(12)}
    for n in range(13):
        at = now - dt.timedelta(seconds=100 + n)
        created[await add(database, created_at=at)] = at
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 7}
    while True:
        page = await http.get("/v1/messages", params=params, headers=keys["app"])
        seen += ids_of(page)
        for _ in range(3):  # newer rows arrive between pages
            await add(database, created_at=clock.utcnow())
        if page.json()["next_cursor"] is None:
            break
        params["cursor"] = page.json()["next_cursor"]
    newest_first = sorted(created, key=lambda i: (created[i], i), reverse=True)
    assert seen == [str(i) for i in newest_first]


async def test_a_key_sees_only_its_own_clients_messages(
    http: httpx.AsyncClient, keys: Keys, labelled: dict[str, str]
) -> None:
    """Without admin, the list is the key's own client's: another key sees only its own."""
    mine = ids_of(await http.get("/v1/messages", headers=keys["app"]))
    theirs = ids_of(await http.get("/v1/messages", headers=keys["other"]))
    assert set(mine) == {labelled[label] for label in EVERYTHING - {"client"}}
    assert theirs == [labelled["client"]]


async def test_asking_for_another_clients_messages_needs_admin(
    http: httpx.AsyncClient, keys: Keys, labelled: dict[str, str]
) -> None:
    """client=other is 403 for a read key, allowed for admin; one's own client is fine."""
    refused = await http.get("/v1/messages?client=other", headers=keys["app"])
    assert refused.status_code == 403
    assert refused.json() == {"detail": "this key may only see its own client's messages"}
    assert len(ids_of(await http.get("/v1/messages?client=app", headers=keys["app"]))) == 9
    assert (await http.get("/v1/stats?client=other", headers=keys["app"])).status_code == 403
    assert ids_of(await http.get("/v1/messages?client=other", headers=keys["ops"])) == [
        labelled["client"]
    ]


async def test_listing_needs_the_read_scope(
    http: httpx.AsyncClient, make_key: Callable[..., Any]
) -> None:
    """A send-only key gets 403; no key gets 401."""
    key = await make_key("sender", "send")
    assert (
        await http.get("/v1/messages", headers={"Authorization": f"Bearer {key}"})
    ).status_code == 403
    assert (await http.get("/v1/messages")).status_code == 401
    assert (await http.get("/v1/stats")).status_code == 401


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/v1/messages", "limit=0", "limit"),
        ("/v1/messages", "limit=501", "limit"),
        ("/v1/messages", "limit=ten", "limit"),
        ("/v1/messages", "limit=5&limit=6", "limit"),
        ("/v1/messages", "cursor=not-a-cursor", "cursor"),
        ("/v1/messages", f"cursor={_b64('2026-01-01T00:00:00|' + uuid.uuid4().hex)}", "cursor"),
        ("/v1/messages", f"cursor={_b64('yesterday|' + uuid.uuid4().hex)}", "cursor"),
        ("/v1/messages", "to=0712", "to"),
        ("/v1/messages", "to=%2B255712345678", "to"),
        ("/v1/messages", "status=lost", "status"),
        ("/v1/messages", "overdue=maybe", "overdue"),
        ("/v1/messages", "created_after=2026-01-01T00:00:00", "created_after"),
        ("/v1/messages", "created_after=1700000000", "created_after"),
        ("/v1/messages", "created_before=0001-01-01T00:00:00%2B01:00", "created_before"),
        ("/v1/messages", "reference=a%00b", "reference"),
        ("/v1/messages", "colour=red", "colour"),
        ("/v1/stats", "window=5y", "window"),
        ("/v1/stats", "window=0", "window"),
        ("/v1/stats", "window=401d", "window"),
        ("/v1/stats", "window=", "window"),
        ("/v1/stats", "window=1h&window=2h", "window"),
    ],
)
async def test_bad_parameters_are_400_naming_the_parameter(
    http: httpx.AsyncClient, keys: Keys, path: str, query: str, field: str
) -> None:
    """Each malformed parameter is a 400 in the errors shape, keyed by its name."""
    response = await http.get(f"{path}?{query}", headers=keys["ops"])
    assert response.status_code == 400, response.text
    assert list(response.json()["errors"]) == [field]


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("24h", 86_400), ("7D", 604_800)]
)
def test_windows_read_as_seconds_or_with_a_unit(text: str, seconds: int) -> None:
    """Plain seconds or s/m/h/d suffixes."""
    assert queries.parse_window(text) == dt.timedelta(seconds=seconds)


def test_a_cursor_round_trips_its_key() -> None:
    """The cursor is opaque to callers but carries the exact (created_at, id)."""
    cursor = queries.Cursor(clock.utcnow(), uuid.uuid4())
    assert queries.decode_cursor(queries.encode_cursor(cursor)) == cursor


async def seed_known_stats(database: db.Database) -> None:
    """The data set whose statistics are worked out by hand below."""
    now = clock.utcnow()
    for seconds, parts in ((10, 1), (20, 2), (30, 1), (40, 1)):  # delivered: 5 units
        await add(
            database,
            status=Status.DELIVERED,
            created_at=now - dt.timedelta(seconds=3600),
            segments=parts,
            accepted_at=now - dt.timedelta(seconds=3595),
            final_at=now - dt.timedelta(seconds=3600 - seconds),
        )
    await add(database, status=Status.FAILED, segments=3, accepted_at=now, final_at=now)
    await add(database, status=Status.REJECTED, segments=4, final_at=now)  # never billed
    await add(
        database, status=Status.PENDING, ago=3 * 3600, accepted_at=now - dt.timedelta(hours=3)
    )
    await add(database, status=Status.PENDING, ago=600, accepted_at=now - dt.timedelta(seconds=590))
    for ago in (120, 60, 30):  # queued and due; the oldest has waited 120 s
        await add(database, ago=ago)
    await add(database, next_attempt_at=now + dt.timedelta(hours=1))  # scheduled
    await add(database, status=Status.SENDING, next_attempt_at=now - dt.timedelta(seconds=5))
    await add(database, status=Status.SENDING, next_attempt_at=now + dt.timedelta(seconds=50))
    three_days_ago = now - dt.timedelta(days=3)  # outside the window
    await add(
        database,
        status=Status.DELIVERED,
        ago=3 * 86_400,
        segments=9,
        accepted_at=three_days_ago,
        final_at=three_days_ago,
    )
    await add(database, client="other", status=Status.FAILED, final_at=now)


async def test_stats_add_up_on_a_known_data_set(
    http: httpx.AsyncClient, keys: Keys, database: db.Database
) -> None:
    """Counts, rate, units, queue, drain, overdue and delivery percentiles, by hand."""
    await seed_known_stats(database)
    response = await http.get("/v1/stats?window=24h", headers=keys["app"])
    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats["window_seconds"] == 86_400
    assert stats["client"] == "app"
    expected = {"queued": 4, "sending": 2, "pending": 2, "delivered": 4, "failed": 1}
    assert stats["counts"] == {**expected, "rejected": 1, "expired": 0, "cancelled": 0}
    assert stats["total"] == 14
    assert stats["delivery_rate"] == pytest.approx(0.8)
    assert stats["units_billed"] == 5 + 3 + 1 + 1
    ttd = stats["time_to_delivery_seconds"]
    assert ttd["count"] == 4
    assert (ttd["p50"], ttd["p95"], ttd["p99"]) == pytest.approx((25.0, 38.5, 39.7))
    assert stats["overdue"] == 1
    queue = stats["queue"]
    assert (queue["depth"], queue["scheduled"]) == (4, 1)
    assert queue["oldest_queued_age_seconds"] == pytest.approx(120, abs=30)
    assert queue["drain_seconds"] == pytest.approx(4.0)  # 4 due at 60 a minute
    assert stats["provider"] == {"rate_limited": 0, "errors": 0}


async def test_stats_for_everyone_and_for_one_client_need_admin_to_widen(
    http: httpx.AsyncClient, keys: Keys, database: db.Database
) -> None:
    """Admin without client counts every client; with client=, that client only."""
    await seed_known_stats(database)
    everyone = (await http.get("/v1/stats", headers=keys["ops"])).json()
    other = (await http.get("/v1/stats?client=other", headers=keys["ops"])).json()
    assert (everyone["client"], everyone["counts"]["failed"], everyone["total"]) == (None, 2, 15)
    assert (other["total"], other["delivery_rate"], other["queue"]["depth"]) == (1, 0.0, 0)
    short = (await http.get("/v1/stats?window=15m", headers=keys["app"])).json()
    assert short["counts"]["delivered"] == 0  # created an hour ago: outside 15 minutes
    assert short["overdue"] == 1  # overdue and the queue are as of now, not windowed


async def test_provider_429s_and_errors_come_from_what_the_dispatcher_recorded(
    make_settings: SettingsFactory, database_url: str, database: db.Database, keys: Keys
) -> None:
    """The real dispatcher against the sandbox: one 429, then 5xx/timeouts, counted apart."""
    lucky = await add(database, ago=1, contact="254700000505")  # one 429, then accepted
    hung = await add(database, ago=1, contact="254700000504")  # answer lost once, then replayed
    unlucky = await add(database, ago=1, contact="254700000503")  # 500 on every attempt
    refused = await add(database, ago=1, sender_name="NOPE")  # 400: not the sandbox's sender
    ids = [lucky, hung, unlucky, refused]
    config = sandbox_config(burst_length=1)
    with loop(make_settings, database_url, config, max_attempts=3) as (settings, _):
        async with dispatching(settings, database):
            rows = await wait_for(database, ids, settled)
        accepted = {Status.PENDING, Status.DELIVERED}  # the report may already be in
        assert [r.status in accepted for r in rows[:2]] == [True, True]
        assert [r.status for r in rows[2:]] == [Status.FAILED, Status.REJECTED]
        async with running(create_app(settings)) as http:
            stats = (await http.get("/v1/stats", headers=keys["app"])).json()
    # hung: 1 timeout; unlucky: 2 retried + 1 that gave up; a 400 is no error
    assert stats["provider"] == {"rate_limited": 1, "errors": 4}


async def test_item_15_provider_trouble_is_counted_from_the_attempt_outcome_column(
    http: httpx.AsyncClient, keys: Keys, database: db.Database
) -> None:
    """Item 15: /v1/stats counts 429s and errors from message_events.outcome, not from the
    detail text: misleading words count for nothing, events without an outcome neither."""
    message_id = await add(database, status=Status.PENDING)
    now = clock.utcnow()
    events = [
        ("rate_limited", "attempt 1: whatever the words say"),
        ("rate_limited", "attempt 2: x"),
        ("no_answer", "attempt 3: y"),
        ("provider_error", "attempt 4: rate limited by KIMISMS; retry at 12:00"),
        ("account_unavailable", "attempt 5: z"),
        ("rejected", "attempt 6: refused"),
        ("accepted", "attempt 7: accepted by KIMISMS"),
        (None, "attempt 0: gave up: rate limited by KIMISMS; retry at 12:00"),
    ]
    async with database.write() as session:
        session.add_all(
            models.MessageEvent(
                message_id=message_id,
                source="dispatcher",
                outcome=outcome,
                detail=detail,
                created_at=now,
            )
            for outcome, detail in events
        )
    stats = (await http.get("/v1/stats", headers=keys["app"])).json()
    assert stats["provider"] == {"rate_limited": 2, "errors": 3}
