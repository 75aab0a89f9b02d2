"""``tracker sandbox``: options in, a ``SandboxConfig`` built, the sandbox served.

``run`` is a plain function with typer annotations; the tracker's CLI registers
it as a command, so typer is imported here only. The credentials default to
the tracker's own ``TRACKER_KIMISMS_*`` variables and the senders to
``TRACKER_SENDER_NAMES`` (comma-separated), so one environment configures both
sides of a demo.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from tracker.sandbox.config import SandboxConfig
from tracker.sandbox.server import serve


def _rate(help_text: str) -> Any:
    return typer.Option(min=0.0, max=1.0, help=help_text)


def _seconds(help_text: str) -> Any:
    return typer.Option(min=0.0, help=help_text)


def split_names(values: list[str]) -> tuple[str, ...]:
    """Accept repeated options and comma-separated lists (the environment's form)."""
    names = (name.strip() for value in values for name in value.split(","))
    return tuple(dict.fromkeys(name for name in names if name))


# Over 40 lines: typer reads one annotated parameter per option; the body is short.
def run(
    *,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8090,
    rate_limit: Annotated[
        int, typer.Option(min=0, help="Requests per sliding minute; 0 disables.")
    ] = 60,
    callback_delay: Annotated[float, _seconds("Seconds before the delivery callback.")] = 1.0,
    failure_ratio: Annotated[float, _rate("Fraction of messages whose report fails.")] = 0.1,
    client_id: Annotated[
        str, typer.Option(envvar="TRACKER_KIMISMS_CLIENT_ID", help="Accepted client id.")
    ] = "sandbox-client",
    client_secret: Annotated[
        str,
        typer.Option(
            envvar="TRACKER_KIMISMS_CLIENT_SECRET", show_default=False, help="Accepted secret."
        ),
    ] = "sandbox-secret",  # noqa: S107 - the sandbox's public fake default
    sender_names: Annotated[
        list[str] | None,
        typer.Option(envvar="TRACKER_SENDER_NAMES", help="Approved Sender IDs (repeat or a,b)."),
    ] = None,
    token_lifetime: Annotated[int, typer.Option(min=1, help="Token lifetime, seconds.")] = 2592000,
    callback_timeout: Annotated[
        float, typer.Option(min=0.001, help="Receiver's deadline, seconds.")
    ] = 5.0,
    latency: Annotated[float, _seconds("Seconds added to every send-sms answer.")] = 0.0,
    error_500_rate: Annotated[float, _rate("Sends answered 500 (not sent).")] = 0.0,
    hang_rate: Annotated[float, _rate("Sends accepted, then answered late.")] = 0.0,
    hang_seconds: Annotated[float, _seconds("How late a hanging answer is.")] = 30.0,
    burst_rate: Annotated[float, _rate("Calls that start a 429 burst.")] = 0.0,
    duplicate_callback_rate: Annotated[float, _rate("Reports posted twice.")] = 0.0,
    stale_callback_rate: Annotated[float, _rate("Stale Pending after the final.")] = 0.0,
    early_callback_rate: Annotated[float, _rate("Reports posted before the answer.")] = 0.0,
    dropped_callback_rate: Annotated[float, _rate("Reports never posted.")] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible faults.")] = None,
) -> None:
    """Run the KIMISMS sandbox (magic numbers: GET /sandbox/magic-numbers)."""
    config = SandboxConfig(
        client_id=client_id,
        client_secret=client_secret,
        sender_names=split_names(sender_names or []) or ("KIMISMS",),
        token_lifetime_seconds=token_lifetime,
        rate_limit_per_minute=rate_limit,
        callback_delay_seconds=callback_delay,
        failure_ratio=failure_ratio,
        callback_timeout_seconds=callback_timeout,
        latency_seconds=latency,
        error_500_rate=error_500_rate,
        accept_then_hang_rate=hang_rate,
        hang_seconds=hang_seconds,
        rate_429_burst_rate=burst_rate,
        duplicate_callback_rate=duplicate_callback_rate,
        stale_callback_rate=stale_callback_rate,
        early_callback_rate=early_callback_rate,
        dropped_callback_rate=dropped_callback_rate,
        seed=seed,
    )
    typer.echo(f"KIMISMS sandbox: senders {', '.join(config.sender_names)}", err=True)
    asyncio.run(serve(config, host, port))
