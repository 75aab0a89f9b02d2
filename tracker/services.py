"""What a running app owns: settings, database, provider HTTP client.

Handlers reach it through ``services_of(request)``; the lifespan in ``app``
creates it and closes it. The callback ingester is ``app.state.ingester``
(``reports.endpoint`` reads it), so this plumbing imports no package.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from starlette.requests import Request

from tracker import db
from tracker.settings import Settings


@dataclass
class Services:
    settings: Settings
    database: db.Database
    provider_http: httpx.AsyncClient


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services
