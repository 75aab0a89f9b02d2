"""Fixtures for the sandbox's contract tests: a fake clock, in-process and live sandboxes,
and a callback receiver on a real socket that can be told to fail or stall.

Factories are fixtures returning callables; every server they start is stopped
at teardown. Timings are short (tens of milliseconds) so the whole suite stays fast.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, ExitStack
from typing import Any

import httpx
import pytest

from tests.sandbox.support import (
    FakeClock,
    InProcess,
    MakeInProcess,
    MakeLive,
    Receiver,
    ReceiverServer,
    SandboxClient,
    fast_config,
)
from tracker.sandbox import create_sandbox_app, running_app, running_sandbox


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_in_process(clock: FakeClock) -> AsyncIterator[MakeInProcess]:
    """In-process sandboxes (lifespan running) on the fake clock."""
    async with AsyncExitStack() as stack:

        async def make(**overrides: Any) -> InProcess:
            app = create_sandbox_app(fast_config(**overrides), clock=clock)
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            client = httpx.AsyncClient(transport=transport, base_url="http://sandbox.test")
            stack.push_async_callback(client.aclose)
            return InProcess(client, app.state.sandbox, clock)

        yield make


@pytest.fixture
async def provider(make_in_process: MakeInProcess) -> InProcess:
    """An in-process sandbox with the test defaults."""
    return await make_in_process()


@pytest.fixture
async def make_live() -> AsyncIterator[MakeLive]:
    """Sandboxes served by uvicorn on free ports, each with a client."""
    with ExitStack() as servers:
        async with AsyncExitStack() as clients:

            def make(**overrides: Any) -> SandboxClient:
                url = servers.enter_context(running_sandbox(fast_config(**overrides)))
                client = httpx.AsyncClient(base_url=url, timeout=5.0)
                clients.push_async_callback(client.aclose)
                return SandboxClient(client)

            yield make


@pytest.fixture(scope="session")
def receiver_server() -> Iterator[ReceiverServer]:
    """One live callback receiver for the whole session (starting one per test is slow)."""
    server = ReceiverServer()
    with running_app(server.app()) as base_url:
        server.base_url = base_url
        yield server


@pytest.fixture
def receiver(receiver_server: ReceiverServer) -> Receiver:
    """This test's own inbox: answers 200 at once unless told otherwise."""
    return receiver_server.inbox()
