"""What a running app owns: settings, database, provider HTTP client.

Handlers reach it through ``services_of(request)``; the lifespan in ``app``
creates it and closes it. The callback ingester is ``app.state.ingester``
(``reports.endpoint`` reads it), so this plumbing imports no package.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from starlette.requests import Request

from tracker import db, wakeup
from tracker.settings import Settings


@dataclass
class Services:
    settings: Settings
    database: db.Database
    provider_http: httpx.AsyncClient
    # Rung by the send API after a commit; the in-process dispatcher waits on it.
    doorbell: wakeup.Doorbell = field(default_factory=wakeup.Doorbell)
    # Rung after a commit that queued webhook deliveries; the in-process deliverer waits on it.
    webhook_doorbell: wakeup.Doorbell = field(default_factory=wakeup.Doorbell)


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services
