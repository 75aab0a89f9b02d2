"""Each magic number's fault, over real HTTP, deterministically."""

from __future__ import annotations

import asyncio
import time

import httpx
import phonenumbers
import pytest

from tests.sandbox.support import TOKEN_BODY, MakeLive, Receiver, SandboxClient
from tracker.sandbox import MAGIC_NUMBERS
from tracker.sandbox.faults import Fault
from tracker.sandbox.validation import CONTACT_PATTERN

SLOW = "254700000501"
FAILS_ONCE = "254700000502"
ALWAYS_500 = "254700000503"
HANGS = "254700000504"
BURST = "254700000505"
DUPLICATE = "254700000506"
STALE = "254700000507"
EARLY = "254700000508"
DROPPED = "254700000509"
LATE = "254700000514"
FAILED_THEN_DELIVERED = "254700000515"


@pytest.mark.parametrize("contact", sorted(MAGIC_NUMBERS))
def test_every_magic_number_is_a_valid_kenyan_mobile(contact: str) -> None:
    """The tracker validates recipients first, so every magic number must pass as KE mobile."""
    number = phonenumbers.parse(f"+{contact}", "KE")

    assert phonenumbers.is_valid_number(number)
    assert phonenumbers.region_code_for_number(number) == "KE"
    assert phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.MOBILE
    assert CONTACT_PATTERN.fullmatch(contact)


async def test_the_slow_number_is_answered_late(make_live: MakeLive) -> None:
    """2547000005 01 adds slow_response_seconds to the answer (and still sends)."""
    live = make_live(slow_response_seconds=0.4)
    await live.token()
    started = time.monotonic()

    response = await live.send(SLOW)

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.4


async def test_the_always_500_number_never_sends(make_live: MakeLive) -> None:
    """...03 is a 500 (Django's HTML page, not JSON) on every attempt, and nothing is sent."""
    live = make_live()

    answers = [await live.send(ALWAYS_500, key="k") for _ in range(3)]

    assert {answer.status_code for answer in answers} == {500}
    assert answers[0].headers["content-type"].startswith("text/html")
    stats = await live.stats()
    assert (stats["accepted_sends"], stats["server_errors"]) == (0, 3)


async def test_the_fails_once_number_succeeds_on_retry_with_its_key(make_live: MakeLive) -> None:
    """...02 is a 500 only for the first attempt of each key; the retry is accepted."""
    live = make_live()

    first = await live.send(FAILS_ONCE, key="k1")
    retry = await live.send(FAILS_ONCE, key="k1")
    other_key = await live.send(FAILS_ONCE, key="k2")

    assert [first.status_code, retry.status_code, other_key.status_code] == [500, 200, 500]
    assert (await live.stats())["accepted_sends"] == 1


async def test_the_fails_once_number_fails_every_keyless_attempt(make_live: MakeLive) -> None:
    """Without a key there is no "first attempt" to remember, so every call fails."""
    live = make_live()

    answers = [await live.send(FAILS_ONCE) for _ in range(2)]

    assert [answer.status_code for answer in answers] == [500, 500]


async def test_the_hanging_number_is_sent_although_the_client_times_out(
    make_live: MakeLive, receiver: Receiver
) -> None:
    """...04 records the send and posts its report, but answers after hang_seconds."""
    live = make_live(hang_seconds=1.0)
    await live.token()

    with pytest.raises(httpx.ReadTimeout):
        await live.send(HANGS, key="k", callback_url=receiver.url(), read_timeout_seconds=0.2)
    retry = await live.send(HANGS, key="k", callback_url=receiver.url())

    [message] = await live.messages()
    assert retry.status_code == 200
    assert retry.json()["message_id"] == message["message_id"]
    assert (await receiver.wait_for(1))[0].body["message_id"] == message["message_id"]
    calls = [call for call in await live.calls() if call["path"] == "/api/send-sms"]
    assert [(call["status_code"], call["replay"]) for call in calls] == [(200, False), (200, True)]


async def test_the_burst_number_starts_a_429_burst(make_live: MakeLive) -> None:
    """...05 answers its first attempt and the next two calls 429 with Retry-After: 1."""
    live = make_live(burst_length=3)
    await live.token()

    first = await live.send(BURST, key="k")
    during = [
        await live.client.get("/sandbox/stats"),
        await live.send(key="x"),
        await live.client.post("/api/generate-token", json=TOKEN_BODY),
    ]
    after = await live.send(BURST, key="k")

    assert first.status_code == 429
    assert first.headers["Retry-After"] == "1"
    assert during[0].status_code == 200  # inspection is never throttled
    assert during[1].status_code == during[2].status_code == 429
    assert after.status_code == 200
    assert (await live.stats())["throttled"] == 3
    assert (await live.stats())["throttled_by_limit"] == 0  # bursts are not the client's doing


async def test_the_burst_number_leaves_the_rate_window_untouched(make_live: MakeLive) -> None:
    """Calls answered 429 by a burst do not use up the rate limit."""
    live = make_live(rate_limit_per_minute=4, burst_length=1)
    await live.send(key="n0")  # a token call and a send: 2 calls in the window

    refused = await live.send(BURST, key="k")  # 429: its place is given back
    accepted = [await live.send(key=f"n{i}") for i in (1, 2)]  # calls 3 and 4
    over = await live.send(key="n3")

    assert refused.status_code == 429
    assert [answer.status_code for answer in accepted] == [200, 200]
    assert over.status_code == 429
    assert int(over.headers["Retry-After"]) > 1  # the window's refusal, not the burst's


async def reports_for(
    live: SandboxClient, receiver: Receiver, contact: str, count: int
) -> list[str]:
    """Send to ``contact`` with a callback and return the statuses of ``count`` reports."""
    await live.send(contact, callback_url=receiver.url())
    await receiver.wait_for(count)
    await live.settled()
    return receiver.statuses()


async def test_the_duplicate_number_gets_its_final_report_twice(
    make_live: MakeLive, receiver: Receiver
) -> None:
    """...06 posts the same final report two times."""
    live = make_live()

    statuses = await reports_for(live, receiver, DUPLICATE, 2)

    assert statuses == ["Delivered", "Delivered"]
    assert receiver.received[0].body == receiver.received[1].body
    assert (await live.stats())["callbacks_ok"] == 2


async def test_the_stale_number_gets_pending_after_delivered(
    make_live: MakeLive, receiver: Receiver
) -> None:
    """...07 posts a non-final Pending report after the final Delivered one."""
    live = make_live()

    statuses = await reports_for(live, receiver, STALE, 2)

    assert statuses == ["Delivered", "Pending"]
    assert receiver.received[1].body["description"] == "Initiated"


async def test_the_early_number_posts_its_report_before_answering(
    make_live: MakeLive, receiver: Receiver
) -> None:
    """...08: when the send-sms answer arrives, the receiver already has the report."""
    live = make_live(callback_delay_seconds=5.0)

    response = await live.send(EARLY, callback_url=receiver.url())

    assert response.status_code == 200
    assert [item.body["message_id"] for item in receiver.received] == [
        response.json()["message_id"]
    ]
    assert receiver.statuses() == ["Delivered"]


async def test_the_dropped_number_never_gets_a_report(
    make_live: MakeLive, receiver: Receiver
) -> None:
    """...09 is accepted but no callback is ever posted; inspection says it was dropped."""
    live = make_live()
    await live.send(DROPPED, callback_url=receiver.url())

    stats = await live.settled()
    await asyncio.sleep(0.2)

    assert receiver.received == []
    assert stats["callbacks_dropped"] == 1
    assert (await live.messages())[0]["callback_dropped"] is True


@pytest.mark.parametrize(
    ("contact", "status"),
    [
        ("254700000510", "Failed"),
        ("254700000511", "Rejected"),
        ("254700000512", "Undelivered"),
        ("254700000513", "Expired"),
    ],
)
async def test_the_failure_numbers_end_in_their_status(
    make_live: MakeLive, receiver: Receiver, contact: str, status: str
) -> None:
    """...10 to ...13 end in Failed, Rejected, Undelivered and Expired, each described."""
    live = make_live()

    statuses = await reports_for(live, receiver, contact, 1)

    assert statuses == [status]
    assert receiver.received[0].body["description"]
    assert (await live.messages())[0]["final_status"] == status


async def test_the_late_number_reports_after_late_callback_seconds(
    make_live: MakeLive, receiver: Receiver
) -> None:
    """...14 waits late_callback_seconds instead of callback_delay_seconds."""
    live = make_live(callback_delay_seconds=0.01, late_callback_seconds=0.4)
    started = time.monotonic()
    await live.send(LATE, callback_url=receiver.url())

    received = await receiver.wait_for(1)

    assert received[0].at - started >= 0.4


async def test_the_failed_then_delivered_number_reports_both_in_order(
    make_live: MakeLive, receiver: Receiver
) -> None:
    """...15 reports Failed first and Delivered later: a late delivery."""
    live = make_live()

    statuses = await reports_for(live, receiver, FAILED_THEN_DELIVERED, 2)

    assert statuses == ["Failed", "Delivered"]


async def test_magic_numbers_ignore_the_random_rates(
    make_live: MakeLive, receiver: Receiver
) -> None:
    """With every rate at 1, the always-Delivered number still gets one Delivered report."""
    live = make_live(
        error_500_rate=1.0,
        failure_ratio=1.0,
        duplicate_callback_rate=1.0,
        dropped_callback_rate=1.0,
    )

    statuses = await reports_for(live, receiver, "254700000500", 1)

    assert statuses == ["Delivered"]


async def test_the_table_is_served(make_live: MakeLive) -> None:
    """GET /sandbox/magic-numbers lists every number with its faults and final status."""
    live = make_live()

    table = await live.get_json("/sandbox/magic-numbers")

    assert [row["contact"] for row in table] == list(MAGIC_NUMBERS)
    by_contact = {row["contact"]: row for row in table}
    assert by_contact[DUPLICATE]["faults"] == [Fault.DUPLICATE_CALLBACK.value]
    assert by_contact["254700000511"]["final_status"] == "Rejected"
