"""The baseline: a bare Starlette endpoint that does the same JSON parse and answers 200."""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def callback(request: Request) -> JSONResponse:
    json.loads(await request.body())
    return JSONResponse({"received": True, "outcome": "applied"})


app = Starlette(routes=[Route("/v1/callbacks/kimisms/{id}/{token}", callback, methods=["POST"])])
