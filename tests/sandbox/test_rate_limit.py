"""The 60/min limit: a sliding window over every call, 429 with Retry-After, bursts."""

from __future__ import annotations

import random

from tests.sandbox.support import TOKEN_BODY, InProcess, MakeInProcess, MakeLive
from tracker.sandbox.ratelimit import RateLimiter, Slot, Throttled


class ScriptedRandom(random.Random):
    """A generator whose ``random()`` returns a script, to trigger bursts exactly."""

    def __init__(self, values: list[float]) -> None:
        super().__init__(0)
        self.values = values

    def random(self) -> float:
        return self.values.pop(0)


async def token_call(provider: InProcess) -> int:
    response = await provider.client.post("/api/generate-token", json=TOKEN_BODY)
    return response.status_code


async def test_the_call_over_the_limit_gets_429_with_retry_after(
    make_in_process: MakeInProcess,
) -> None:
    """With 5/min, the sixth call in a minute is 429 with DRF's detail and Retry-After."""
    provider = await make_in_process(rate_limit_per_minute=5)
    statuses = [await token_call(provider) for _ in range(5)]

    response = await provider.client.post("/api/generate-token", json=TOKEN_BODY)

    assert statuses == [200] * 5
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "60"
    assert response.json() == {"detail": "Request was throttled. Expected available in 60 seconds."}


async def test_every_kind_of_call_counts_toward_the_limit(make_in_process: MakeInProcess) -> None:
    """Token calls, sends, 400s and 401s all use up the same window."""
    provider = await make_in_process(rate_limit_per_minute=5)
    token = await provider.token()  # 1: a token call
    await provider.client.post("/api/generate-token", json={})  # 2: a 400
    await provider.client.post("/api/send-sms", json={})  # 3: a 401
    auth = {"Authorization": f"Bearer {token}"}
    await provider.client.post("/api/send-sms", json={}, headers=auth)  # 4: a 400
    body = {"sender_name": "KIMISMS", "contact": "254712345678", "message": "Hi"}
    await provider.client.post("/api/send-sms", json=body, headers=auth)  # 5: a 200

    response = await provider.client.post("/api/send-sms", json=body, headers=auth)

    assert response.status_code == 429
    statuses = [call["status_code"] for call in await provider.calls()]
    assert statuses == [200, 400, 401, 400, 200, 429]
    assert (await provider.stats())["accepted_sends"] == 1


async def test_the_window_slides(make_in_process: MakeInProcess) -> None:
    """Retry-After counts down to when the oldest call leaves; then one call fits again."""
    provider = await make_in_process(rate_limit_per_minute=5)
    for _ in range(5):
        assert await token_call(provider) == 200
        provider.clock.advance(2)

    provider.clock.advance(40)  # 50 s after the first call
    throttled = await provider.client.post("/api/generate-token", json=TOKEN_BODY)
    provider.clock.advance(10)  # the first call has left the window
    allowed = await token_call(provider)
    refused_again = await provider.client.post("/api/generate-token", json=TOKEN_BODY)

    assert throttled.headers["Retry-After"] == "10"
    assert allowed == 200
    assert refused_again.status_code == 429
    assert refused_again.headers["Retry-After"] == "2"


async def test_throttled_calls_do_not_count(make_in_process: MakeInProcess) -> None:
    """Hammering while throttled costs nothing: once the window passes, a full limit is free."""
    provider = await make_in_process(rate_limit_per_minute=3)
    for _ in range(3):
        await token_call(provider)
    provider.clock.advance(30)
    refused = [await token_call(provider) for _ in range(10)]
    provider.clock.advance(31)

    allowed = [await token_call(provider) for _ in range(3)]

    assert refused == [429] * 10
    assert allowed == [200] * 3


async def test_a_limit_of_zero_disables_the_window(make_in_process: MakeInProcess) -> None:
    """rate_limit_per_minute=0 lets any number of calls through."""
    provider = await make_in_process(rate_limit_per_minute=0)

    statuses = {await token_call(provider) for _ in range(100)}

    assert statuses == {200}


async def test_a_random_burst_refuses_burst_length_calls_with_retry_after_1(
    make_in_process: MakeInProcess,
) -> None:
    """With rate_429_burst_rate=1 every call is inside a burst: 429, Retry-After: 1."""
    provider = await make_in_process(rate_429_burst_rate=1.0)

    response = await provider.client.post("/api/generate-token", json=TOKEN_BODY)

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response.json() == {"detail": "Request was throttled. Expected available in 1 second."}
    assert (await provider.stats())["throttled"] == 1


def test_a_burst_starts_on_a_draw_and_lasts_burst_length_calls() -> None:
    """One lucky draw refuses that call and the next two; then calls are admitted again."""
    limiter = RateLimiter(0, burst_rate=0.5, burst_length=3, rng=ScriptedRandom([0.1, 0.9, 0.9]))

    answers = [limiter.admit(float(second)) for second in range(5)]

    assert answers[:3] == [Throttled(1, burst=True)] * 3
    assert answers[3:] == [Slot(3.0), Slot(4.0)]


def test_a_released_slot_frees_its_place_in_the_window() -> None:
    """A call later answered 429 (a burst fault) gives back the place it took."""
    limiter = RateLimiter(1, burst_rate=0.0, burst_length=3, rng=random.Random(0))
    slot = limiter.admit(0.0)
    assert isinstance(slot, Slot)

    limiter.release(slot)
    limiter.release(slot)  # releasing twice is harmless

    assert isinstance(limiter.admit(1.0), Slot)


async def test_a_429_over_real_http_carries_an_integer_retry_after(make_live: MakeLive) -> None:
    """The header survives a real server: Retry-After is whole seconds."""
    live = make_live(rate_limit_per_minute=2)
    await live.token()
    await live.token()

    response = await live.client.post("/api/generate-token", json=TOKEN_BODY)

    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 60
