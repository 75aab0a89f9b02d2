"""/sandbox/*: the evidence tests read to prove nothing went out twice."""

from __future__ import annotations

from tests.sandbox.support import CONTACT, SENDER, InProcess, MakeInProcess, Receiver


async def test_messages_lists_every_accepted_send_with_its_details(provider: InProcess) -> None:
    """Each accepted send appears once with its key, recipient, body, size and times."""
    answer = (await provider.send(key="key-1", message="Habari")).json()

    [message] = await provider.messages()

    assert message["message_id"] == answer["message_id"]
    assert message["idempotency_key"] == "key-1"
    assert message["contact"] == CONTACT
    assert message["sender_name"] == SENDER
    assert message["message"] == "Habari"
    assert message["message_length"] == 6
    assert message["parts"] == 1
    assert message["callback_url"] is None
    assert message["accepted_at"] == "2027-01-15T08:00:00+00:00"
    assert message["final_status"] == "Delivered"
    assert message["faults"] == []
    assert message["callbacks"] == []


async def test_messages_can_be_filtered(provider: InProcess) -> None:
    """?contact= and ?idempotency_key= narrow the list."""
    await provider.send("254711111111", key="a")
    await provider.send("254722222222", key="b")
    await provider.send("254722222222", key="c")

    by_contact = await provider.get_json("/sandbox/messages?contact=254722222222")
    by_key = await provider.get_json("/sandbox/messages?idempotency_key=a")

    assert [m["idempotency_key"] for m in by_contact] == ["b", "c"]
    assert [m["contact"] for m in by_key] == ["254711111111"]


async def test_one_message_is_found_by_id_or_404(provider: InProcess) -> None:
    """GET /sandbox/messages/{id} returns that send; an unknown id is 404."""
    answer = (await provider.send()).json()

    found = await provider.client.get(f"/sandbox/messages/{answer['message_id']}")
    missing = await provider.client.get("/sandbox/messages/no-such-id")

    assert found.json()["message_id"] == answer["message_id"]
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not found."}


async def test_calls_records_every_api_call_but_not_inspection(provider: InProcess) -> None:
    """Each provider call is logged with path, status and key; /sandbox/* reads are not."""
    await provider.send(key="k")
    await provider.send(key="k")
    await provider.client.get("/sandbox/stats")

    calls = await provider.calls()

    assert [(c["path"], c["status_code"], c["idempotency_key"]) for c in calls] == [
        ("/api/generate-token", 200, None),
        ("/api/send-sms", 200, "k"),
        ("/api/send-sms", 200, "k"),
    ]
    assert calls[0]["at"] == "2027-01-15T08:00:00+00:00"
    assert [c["replay"] for c in calls] == [False, False, True]
    assert calls[1]["message_id"] == calls[2]["message_id"]
    assert calls[0]["answer"]["access_token"] == "[issued]"  # the log repeats no token
    assert calls[1]["answer"] == calls[2]["answer"]  # a replay answers what the first did
    assert calls[1]["answer"]["message_id"] == calls[1]["message_id"]
    assert calls[1]["answer"]["status"] == "Pending"


async def test_inspection_is_never_rate_limited(make_in_process: MakeInProcess) -> None:
    """Reading the evidence works even while the API is throttled."""
    provider = await make_in_process(rate_limit_per_minute=1)
    await provider.token()

    answers = [await provider.client.get("/sandbox/stats") for _ in range(5)]

    assert {answer.status_code for answer in answers} == {200}


async def test_stats_count_what_the_invariants_need(
    make_in_process: MakeInProcess, receiver: Receiver
) -> None:
    """Stats count calls, sends, keys, replays, 429s, 500s and callbacks by outcome."""
    provider = await make_in_process(rate_limit_per_minute=8)
    await provider.send(key="a", callback_url=receiver.url())
    await provider.send(key="a")  # replay
    await provider.send(key="b")
    await provider.send()
    await provider.send("254700000503", key="c")  # 500
    await provider.send("254700000509", key="d", callback_url=receiver.url())  # dropped
    await provider.send(key="e")  # the eighth call
    await provider.send(key="f")  # 429
    await receiver.wait_for(1)

    stats = await provider.settled()

    assert stats == {
        "calls": 9,
        "calls_by_status": {"200": 7, "429": 1, "500": 1},
        "token_calls": 1,
        "send_calls": 8,
        "replays": 1,
        "throttled": 1,
        "throttled_by_limit": 1,
        "server_errors": 1,
        "accepted_sends": 5,
        "sends_without_key": 1,
        "distinct_idempotency_keys": 4,
        "max_sends_per_key": 1,
        "callbacks_ok": 1,
        "callbacks_failed": 0,
        "callbacks_dropped": 1,
        "callbacks_pending": 0,
    }


async def test_reset_forgets_everything(make_in_process: MakeInProcess) -> None:
    """After a reset: no calls, no sends, keys are new, the rate window is empty."""
    provider = await make_in_process(rate_limit_per_minute=3)
    first = (await provider.send(key="k")).json()
    await provider.send(key="k")

    await provider.client.post("/sandbox/reset")
    after = await provider.send(key="k")

    assert after.status_code == 200  # a fourth call in the minute: only fits after the reset
    assert after.json()["message_id"] != first["message_id"]
    assert [c["replay"] for c in await provider.calls()] == [False]
    assert (await provider.stats())["accepted_sends"] == 1


async def test_health_answers_ok(provider: InProcess) -> None:
    """GET /sandbox/health is the readiness probe for scripts."""
    assert await provider.get_json("/sandbox/health") == {"status": "ok"}
