"""Idempotency-Key: a replay returns the original answer and sends nothing."""

from __future__ import annotations

import asyncio

from tests.sandbox.support import InProcess, MakeInProcess, MakeLive, Receiver

PLAIN = "254700000500"  # always Delivered
FAILS_ONCE = "254700000502"  # 500 on the first attempt per key


async def test_a_replay_returns_the_original_answer_and_sends_nothing(provider: InProcess) -> None:
    """Two sends with one key: one accepted send, the same answer twice."""
    first = await provider.send(key="key-1")
    second = await provider.send(key="key-1")

    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    stats = await provider.stats()
    assert stats["accepted_sends"] == 1
    assert stats["replays"] == 1
    assert stats["max_sends_per_key"] == 1


async def test_a_replay_schedules_no_second_callback(
    make_live: MakeLive, receiver: Receiver
) -> None:
    """Over real HTTP, three sends with one key produce exactly one delivery report."""
    live = make_live()
    for _ in range(3):
        await live.send(PLAIN, key="key-cb", callback_url=receiver.url())

    stats = await live.settled()
    await asyncio.sleep(0.2)  # room for a wrong second report to arrive

    assert len(receiver.received) == 1
    assert stats["accepted_sends"] == 1
    assert stats["callbacks_ok"] == 1


async def test_a_replay_with_another_body_still_gets_the_original_answer(
    provider: InProcess,
) -> None:
    """A reused key with a different body replays the first answer; the log flags it."""
    first = await provider.send("254712345678", key="key-2")
    second = await provider.send("254798765432", key="key-2", message="Other")

    assert second.status_code == 200
    assert second.json() == first.json()
    assert second.json()["contact"] == "254712345678"
    sends = [call for call in await provider.calls() if call["path"] == "/api/send-sms"]
    assert [call["body_mismatch"] for call in sends] == [False, True]
    assert [call["replay"] for call in sends] == [False, True]
    assert (await provider.stats())["accepted_sends"] == 1


async def test_sends_without_a_key_are_all_sent(provider: InProcess) -> None:
    """Without Idempotency-Key every call is a new send (the reason keys exist)."""
    first = await provider.send()
    second = await provider.send()

    assert first.json()["message_id"] != second.json()["message_id"]
    stats = await provider.stats()
    assert stats["accepted_sends"] == 2
    assert stats["sends_without_key"] == 2


async def test_a_key_is_forgotten_after_its_ttl(make_in_process: MakeInProcess) -> None:
    """After idempotency_ttl_seconds the same key sends again (a new message id)."""
    provider = await make_in_process(idempotency_ttl_seconds=86400)
    first = await provider.send(key="key-3")
    provider.clock.advance(86399)
    within = await provider.send(key="key-3")
    provider.clock.advance(1)
    after = await provider.send(key="key-3")

    assert within.json() == first.json()
    assert after.json()["message_id"] != first.json()["message_id"]
    assert (await provider.stats())["max_sends_per_key"] == 2


async def test_a_validation_error_is_cached_under_its_key(provider: InProcess) -> None:
    """A 400 is a definite answer: the same key replays it even with a fixed body."""
    token = await provider.token()
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "key-4"}
    refused = await provider.client.post("/api/send-sms", json={}, headers=headers)

    replay = await provider.send(key="key-4")

    assert refused.status_code == replay.status_code == 400
    assert replay.json() == refused.json()
    assert (await provider.stats())["accepted_sends"] == 0


async def test_a_500_is_not_cached_so_the_retry_sends(provider: InProcess) -> None:
    """After a 500 the retry with the same key is a fresh attempt, and later ones replay it."""
    failed = await provider.send(FAILS_ONCE, key="key-5")
    retried = await provider.send(FAILS_ONCE, key="key-5")
    replayed = await provider.send(FAILS_ONCE, key="key-5")

    assert failed.status_code == 500
    assert retried.status_code == replayed.status_code == 200
    assert replayed.json() == retried.json()
    assert (await provider.stats())["accepted_sends"] == 1


async def test_concurrent_sends_with_one_key_send_once(make_live: MakeLive) -> None:
    """Ten simultaneous sends with one key over real HTTP: one send, one message id."""
    live = make_live()
    await live.send(key="warm-up")  # fetch the token first

    answers = await asyncio.gather(*(live.send(key="key-6") for _ in range(10)))

    assert {answer.status_code for answer in answers} == {200}
    assert len({answer.json()["message_id"] for answer in answers}) == 1
    messages = [m for m in await live.messages() if m["idempotency_key"] == "key-6"]
    assert len(messages) == 1
