"""`tracker webhooks ...`, run as a user runs them, on both databases."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.acceptance.test_clients_cli import ok, refused, row_of
from tests.integration import webhook_support as support
from tests.processes import run_tracker
from tracker import clock, db, models
from tracker.clients import records
from tracker.webhooks import events

HOOK = support.HOOK


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    """A migrated database of the test's backend, with loopback open to webhooks."""
    return {
        "TRACKER_DATA_DIR": str(tmp_path / "data"),
        "TRACKER_DATABASE_URL": database_url,
        "TRACKER_LOG_FORMAT": "json",
        "TRACKER_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
        "COLUMNS": "250",  # rich tables unwrapped, so a row is one line
    }


@pytest.fixture
async def billing(database: db.Database) -> str:
    """A client named billing."""
    async with database.write() as session:
        await records.ensure(session, "billing")
    return "billing"


def create(env: dict[str, str], *args: str) -> dict[str, object]:
    """`webhooks create --json` for billing at HOOK: the endpoint with its secret."""
    created: dict[str, object] = json.loads(
        ok("webhooks", "create", "--client", "billing", "--url", HOOK, "--json", *args, env=env)
    )
    return created


async def test_create_list_show_update_rotate_and_delete(env: dict[str, str], billing: str) -> None:
    """The secret is printed once at create and at rotate; list and show never print it."""
    result = run_tracker(
        "webhooks", "create", "--client", billing, "--url", HOOK,
        "--events", "message.failed,message.delivered", "--description", "billing", env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    secret = result.stdout.strip()
    assert secret.startswith("whsec_")
    assert "created webhook endpoint" in result.stderr
    listed = ok("webhooks", "list", env=env)
    endpoint_id = support_id(listed)
    assert row_of(listed, endpoint_id)[1:5] == [
        billing, HOOK, "message.delivered,message.failed", "enabled",
    ]  # fmt: skip
    shown = ok("webhooks", "show", endpoint_id, env=env)
    assert secret not in shown + listed
    assert "pending                0" in shown
    updated = ok("webhooks", "update", endpoint_id, "--disable", "--events", "message.failed",
                 env=env)  # fmt: skip
    assert "disabled (disabled by request)" in updated
    as_json = json.loads(ok("webhooks", "show", endpoint_id, "--json", env=env))
    assert (as_json["enabled"], as_json["events"]) == (False, ["message.failed"])
    rotated = run_tracker("webhooks", "rotate-secret", endpoint_id, env=env)
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.strip().startswith("whsec_")
    assert rotated.stdout.strip() != secret
    assert "the previous one signs too" in rotated.stderr
    assert ok("webhooks", "delete", endpoint_id, env=env).strip() == (
        f"deleted webhook endpoint {endpoint_id}"
    )
    assert "no webhook endpoint" in refused("webhooks", "show", endpoint_id, env=env)


def support_id(listed: str) -> str:
    """The id in the first body row of `webhooks list` (plain text in a pipe: no boxes)."""
    lines = [line for line in listed.splitlines() if line.strip()]
    assert lines[0].split()[0] == "id"
    assert "│" not in listed
    return lines[1].split()[0]


async def test_json_output_is_the_apis_shape(env: dict[str, str], billing: str) -> None:
    """create --json holds the secret and every event by default; list --json does not."""
    created = create(env)
    assert str(created["secret"]).startswith("whsec_")
    assert created["events"] == list(events.MESSAGE_EVENTS)
    listed = json.loads(ok("webhooks", "list", "--client", billing, "--json", env=env))
    assert [w["id"] for w in listed["webhooks"]] == [created["id"]]
    assert "secret" not in listed["webhooks"][0]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--url", "http://10.0.0.1/hook"), "--url: the host resolves to 10.0.0.1 (private)"),
        (("--url", "https://169.254.169.254/"), "--url: the host resolves to 169.254.169.254"),
        (("--url", HOOK, "--events", "message.sent"), "--events: unknown event 'message.sent'"),
        (("--url", HOOK, "--description", "x" * 300), "--description: must be at most 255"),
    ],
)
async def test_create_refusals_name_the_option(
    env: dict[str, str], billing: str, args: tuple[str, ...], words: str
) -> None:
    """A refused url, an unknown event or a long description: one line naming the option."""
    line = refused("webhooks", "create", "--client", billing, *args, env=env)
    assert words in line


async def test_other_mistakes_are_one_line(env: dict[str, str], billing: str) -> None:
    """An unknown client or id, nothing to change, a naive --since: exit 2, one line each."""
    assert "no client named 'nobody'" in refused(
        "webhooks", "create", "--client", "nobody", "--url", HOOK, env=env
    )
    assert "no webhook endpoint 'xyz'" in refused("webhooks", "show", "xyz", env=env)
    endpoint_id = str(create(env)["id"])
    assert "nothing to change" in refused("webhooks", "update", endpoint_id, env=env)
    assert "--since: must include a UTC offset" in refused(
        "webhooks", "recover", endpoint_id, "--since", "2026-01-01T00:00:00", env=env
    )
    assert "no webhook delivery 12345" in refused("webhooks", "retry", "12345", env=env)


async def test_deliveries_retry_and_recover(
    env: dict[str, str], billing: str, database: db.Database
) -> None:
    """deliveries lists with attempts; retry makes one pending (then 409); recover counts."""
    endpoint_id = str(create(env)["id"])
    retried = await support.add_delivery(database, endpoint_id, "failed", attempts=2)
    await support.add_delivery(database, endpoint_id, "failed")
    page = json.loads(
        ok("webhooks", "deliveries", endpoint_id, "--status", "failed", "--json", env=env)
    )
    assert [d["id"] for d in page["deliveries"]][-1] == retried
    assert len(page["deliveries"][-1]["attempt_history"]) == 2
    table = ok("webhooks", "deliveries", endpoint_id, env=env)
    assert row_of(table, str(retried))[1:5] == [
        "message.delivered",
        "failed",
        "2",
        "HTTP 500: HTTP 500",
    ]
    assert ok("webhooks", "retry", str(retried), env=env).strip() == (
        f"delivery {retried} (message.delivered) is pending again"
    )
    assert "is pending" in refused("webhooks", "retry", str(retried), env=env)
    recovered = ok("webhooks", "recover", endpoint_id, "--since", "2020-01-01T00:00:00Z", env=env)
    assert recovered.strip() == "recovered 1 failed deliveries"


async def test_test_waits_for_the_attempt_and_prints_its_outcome(
    env: dict[str, str], billing: str, database: db.Database
) -> None:
    """`webhooks test` queues webhook.test and prints the status code once it is recorded
    (here the test records the attempt, as a running deliverer would)."""
    endpoint_id = str(create(env)["id"])
    running = asyncio.create_task(
        asyncio.to_thread(run_tracker, "webhooks", "test", endpoint_id, "--wait", "30", env=env)
    )
    delivery = await _queued_test(database, uuid.UUID(endpoint_id))
    async with database.write() as session:
        row = await session.get(models.WebhookDelivery, delivery)
        assert row is not None
        row.status, row.attempts, row.last_status_code = "succeeded", 1, 204
        row.last_attempt_at = row.completed_at = clock.utcnow()
    result = await running
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "succeeded: HTTP 204"


async def test_test_without_a_deliverer_says_so(env: dict[str, str], billing: str) -> None:
    """No attempt within --wait: exit 1 and a line naming serve and worker."""
    endpoint_id = str(create(env)["id"])
    result = run_tracker("webhooks", "test", endpoint_id, "--wait", "0.5", env=env)
    assert result.returncode == 1, result.stderr
    assert "queued webhook.test delivery" in result.stdout
    assert "no attempt within 0.5 s" in result.stderr


async def _queued_test(database: db.Database, endpoint_id: uuid.UUID) -> int:
    """The id of the webhook.test delivery the command queues, once it exists."""
    for _poll in range(600):
        async with database.read() as session:
            found = await session.scalar(
                select(models.WebhookDelivery.id).where(
                    models.WebhookDelivery.endpoint_id == endpoint_id,
                    models.WebhookDelivery.event_type == "webhook.test",
                )
            )
        if found is not None:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError("the command queued no webhook.test delivery")
