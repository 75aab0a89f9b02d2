"""What a running app owns: settings, database, provider HTTP client.

Handlers reach it through ``services_of(request)``; the lifespan in ``app``
creates it and closes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
from starlette.requests import Request

from tracker import db
from tracker.settings import Settings

if TYPE_CHECKING:
    from tracker.reports.ingest import Ingester


@dataclass
class Services:
    settings: Settings
    database: db.Database
    provider_http: httpx.AsyncClient
    callbacks: Ingester | None = None


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services
