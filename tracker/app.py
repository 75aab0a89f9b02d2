"""Assembles the Starlette application."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tracker import auth, db, health, wakeup, web
from tracker.dashboard import session as dashboard_session
from tracker.dashboard import views as dashboard
from tracker.dispatch import dispatcher
from tracker.middleware import RequestContextMiddleware
from tracker.ops import admin, gauges, handlers, openapi
from tracker.privacy import api as privacy_api
from tracker.privacy import scrub
from tracker.reports import endpoint, ingest
from tracker.reports.spool import Spool
from tracker.sending import api
from tracker.services import Services, services_of
from tracker.settings import Settings
from tracker.webhooks import api as webhooks_api
from tracker.webhooks import deliverer


def provider_client(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The one HTTP client to KIMISMS, with explicit timeouts."""
    timeout = httpx.Timeout(
        settings.provider_read_timeout_seconds,
        connect=settings.provider_connect_timeout_seconds,
    )
    return httpx.AsyncClient(
        base_url=settings.kimisms_base_url, timeout=timeout, transport=transport
    )


async def whoami(request: Request) -> JSONResponse:
    """The client and scopes of the calling key (lets an operator check a key)."""
    principal = await auth.require(request, services_of(request).database, auth.Scope.READ)
    return JSONResponse({"client": principal.client, "scopes": sorted(principal.scopes)})


def freeze_startup_objects() -> None:
    """Call once the app is built: what exists by then (modules, metadata, the app)
    lives as long as the process. Frozen, it is left out of the collector's full
    passes, which then walk only what requests leave behind (a 10,000-message
    batch spent a fifth of its validation time in those passes)."""
    gc.collect()
    gc.freeze()


async def stop_sending(app: Starlette) -> None:
    """Stop the dispatcher claiming and wait for its sends in flight to be recorded
    (a no-op without one). ``serve`` calls it on SIGTERM, while callbacks still
    arrive; the lifespan's end calls it again, which then returns at once."""
    stop: Callable[[], Awaitable[None]] | None = getattr(app.state, "stop_sending", None)
    if stop is not None:
        await stop()


class TrackerApp(Starlette):
    """Starlette, with callback POSTs taken before the middleware stack: the one
    route under outside load answers at several times the rate (see ``reports.endpoint``)."""

    _callbacks = endpoint.CallbackEndpoint()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if endpoint.handles(scope):
            scope["app"] = self
            await self._callbacks(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


# Over 40 lines: the lifespan is a closure over settings, and start-up and
# shut-down read best as one sequence, in order and reversed.
def create_app(
    settings: Settings,
    *,
    provider_transport: httpx.AsyncBaseTransport | None = None,
    run_dispatcher: bool = False,
    run_deliverer: bool = False,
) -> Starlette:
    """The tracker app; the lifespan owns the engine, the provider client and,
    with ``run_dispatcher``, the dispatcher task, with ``run_deliverer`` the webhook
    deliverer's."""

    # Over 40 lines: the one place that starts every service, and stops them in order.
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        database = db.Database(settings.async_database_url, settings.database_timeout_seconds)
        webhook_doorbell = wakeup.Doorbell()
        ingester = ingest.Ingester(
            database,
            Spool(settings.spool_path),
            settings.callback_db_deadline_seconds,
            reports_per_message=settings.callback_reports_per_message,
            committed=webhook_doorbell.ring,
            conceal=scrub.concealer(settings.pseudonym_key_bytes()),
        )
        async with provider_client(settings, provider_transport) as http:
            services = Services(settings, database, http, webhook_doorbell=webhook_doorbell)
            app.state.services = services
            app.state.ingester = ingester
            await ingester.start()
            bells = {"doorbell": services.doorbell, "webhook_doorbell": webhook_doorbell}
            sender = (
                dispatcher.create(settings, database, http, **bells) if run_dispatcher else None
            )
            task = asyncio.create_task(sender.run(), name="dispatcher") if sender else None
            hooks = deliverer.start(settings, database, webhook_doorbell) if run_deliverer else None
            refresher = gauges.GaugeRefresher(database, settings)
            gauges_task = asyncio.create_task(refresher.run(), name="metrics-gauges")

            async def stop_dispatcher() -> None:
                if sender and task:
                    sender.stop()
                    await task

            app.state.stop_sending = stop_dispatcher
            try:
                yield
            finally:
                refresher.stop()
                await gauges_task
                await stop_dispatcher()
                if hooks is not None:
                    await hooks.close()
                await ingester.stop()
                await database.dispose()

    every_route = [
        *health.routes,
        *endpoint.routes,
        *handlers.routes,
        *admin.routes,
        *privacy_api.routes,
        *openapi.routes,
        *api.routes,
        *webhooks_api.routes,
        Route("/v1/whoami", whoami),
        *dashboard.routes,
    ]
    dashboard_session.secret_of(settings)  # the embedded default's is generated once, here
    return TrackerApp(
        routes=every_route,
        middleware=[Middleware(RequestContextMiddleware)],
        exception_handlers={**web.EXCEPTION_HANDLERS, **dashboard.exception_handlers},
        lifespan=lifespan,
    )
