"""A bounded schemathesis run: every documented operation, with a valid key.

On SQLite and PostgreSQL. The schema is the document ``GET /openapi.json``
serves (``openapi.document()``, loaded at collection time: schemathesis's
fixture-based loader does not work with pytest 9). The app runs in-process
(schemathesis's ASGI transport, its lifespan started). Each operation gets a
limited number of generated requests; every answer must be documented, match
its schema, and never be a 5xx.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import positive_data_acceptance
from starlette.applications import Starlette

from tests import conftest
from tracker import auth, db
from tracker.app import create_app
from tracker.ops import openapi
from tracker.settings import Settings

# A deeper run: FUZZ_EXAMPLES=500 .venv/bin/pytest tests/integration/test_openapi_fuzz.py
EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES", "30"))
KEY_NAME = "fuzzer"
ADMIN_KEY_NAME = "fuzzer-admin"
ADMIN_PATHS = ("/v1/clients",)  # fuzzed with an admin key, so their bodies are reached


async def _make_keys(url: str) -> dict[str, str]:
    database = db.Database(url)
    try:
        return {
            scopes: await auth.create_key(database, name, auth.parse_scopes(scopes))
            for name, scopes in ((KEY_NAME, "send,read"), (ADMIN_KEY_NAME, "admin"))
        }
    finally:
        await database.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzz_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated database of each backend, shared by every operation's run."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("fuzz") / "tracker.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    template: str = request.getfixturevalue("postgres_template")
    name = f"tracker_fuzz_{uuid.uuid4().hex[:10]}"
    conftest.blocking_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield conftest.db_async_url(conftest.postgres_url(name))
    finally:
        conftest.blocking_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def api_key_and_app(
    fuzz_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, str], Starlette]]:
    """A send+read key, an admin key and the app (its lifespan is run by schemathesis)."""
    keys = asyncio.run(_make_keys(fuzz_database_url))
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("TRACKER_")]:
            patch.delenv(name)
        app_settings = Settings.load(
            database_url=fuzz_database_url,
            data_dir=tmp_path_factory.mktemp("fuzz-data"),
            log_format="json",
        )
    app = create_app(app_settings)
    try:
        yield keys, app
    finally:
        asgi.shutdown_lifespans()


schema = schemathesis.openapi.from_dict(openapi.document())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_5xx_or_outside_its_schema(
    case: schemathesis.Case[Any], api_key_and_app: tuple[dict[str, str], Starlette]
) -> None:
    """Generated requests get documented, schema-conforming answers, never a 5xx."""
    keys, app = api_key_and_app
    admin = case.operation.path.startswith(ADMIN_PATHS)
    key = keys["admin" if admin else "send,read"]
    # Checks that send probes of their own (ignored_auth...) reach the app through the schema.
    case.operation.schema.app = app
    # Our rules go beyond JSON Schema (a Kenyan mobile number, an allowed sender,
    # a send_at ahead): schema-valid input may rightly be refused with a 400.
    excluded: list[schemathesis.CheckFunction] = [positive_data_acceptance]
    case.call_and_validate(
        app=app, headers={"Authorization": f"Bearer {key}"}, excluded_checks=excluded
    )
