"""``create_sandbox_app``: the KIMISMS imitation as one Starlette application.

The lifespan owns the HTTP client that posts callbacks and, on shutdown,
cancels the callbacks still scheduled, so no task outlives the app. Time comes
from an injected clock (token expiry, the rate window, the key cache); real
sleeps are used only for the delays a test configures.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette

from tracker.sandbox.api import ProviderApi
from tracker.sandbox.config import SandboxConfig
from tracker.sandbox.inspection import InspectionApi
from tracker.sandbox.runtime import Clock, Sandbox


def create_sandbox_app(
    config: SandboxConfig | None = None,
    *,
    clock: Clock = time.time,
    callback_transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """The sandbox app; its state is reachable in-process as ``app.state.sandbox``."""
    sandbox = Sandbox.create(
        config or SandboxConfig(), clock=clock, callback_transport=callback_transport
    )

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await sandbox.courier.open()
        try:
            yield
        finally:
            await sandbox.courier.close()

    routes = [*ProviderApi(sandbox).routes(), *InspectionApi(sandbox).routes()]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sandbox = sandbox
    return app
