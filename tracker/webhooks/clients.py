"""The deliverer's HTTP clients: one per endpoint, the most recently used kept.

Each pool then holds only its endpoint's few connections: httpcore walks every connection
of a pool for each request, which made one shared pool of a hundred the deliverer's main
cost. It also keeps endpoints apart: one endpoint's connections never wait for another's.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import uuid

import httpx

from tracker.settings import Settings
from tracker.webhooks import transport

MAX_CLIENTS = 256  # endpoints with a client (and its pool) kept at once
MAX_ATTEMPT_SECONDS = 300.0  # TRACKER_WEBHOOK_TIMEOUT_SECONDS' ceiling


class Clients:
    """Clients by endpoint; one TLS context serves them all (building one loads the CA
    certificates)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._ssl = ssl.create_default_context()
        self._by_endpoint: collections.OrderedDict[uuid.UUID, httpx.AsyncClient] = (
            collections.OrderedDict()
        )
        self._closing: set[asyncio.Task[None]] = set()

    def get(self, endpoint: uuid.UUID) -> httpx.AsyncClient:
        client = self._by_endpoint.get(endpoint)
        if client is None:
            client = transport.build_client(
                self._settings.webhook_allowed_networks,
                timeout_seconds=self._settings.webhook_timeout_seconds,
                ssl_context=self._ssl,
            )
            self._by_endpoint[endpoint] = client
            if len(self._by_endpoint) > MAX_CLIENTS:
                _old, evicted = self._by_endpoint.popitem(last=False)
                # Closed once its requests in flight are done with it.
                task = asyncio.create_task(_close_later(evicted))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        self._by_endpoint.move_to_end(endpoint)
        return client

    async def close(self) -> None:
        clients = list(self._by_endpoint.values())
        self._by_endpoint.clear()
        await asyncio.gather(*(c.aclose() for c in clients), *self._closing)


async def _close_later(client: httpx.AsyncClient) -> None:
    await asyncio.sleep(transport.CONNECT_TIMEOUT_SECONDS + MAX_ATTEMPT_SECONDS)
    await client.aclose()
