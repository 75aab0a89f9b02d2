"""The ``tracker`` command. Every command reads the same TRACKER_* settings."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import exc as sa_exc
from typer._click import exceptions as click_errors  # typer vendors click; not re-exported

import tracker
from tracker import auth, db, errors, heartbeat, logs, migrate, startup
from tracker.clients import commands as clients_commands
from tracker.clients import records
from tracker.console import commands, views
from tracker.privacy import commands as privacy_commands
from tracker.privacy import retention_commands
from tracker.settings import Settings
from tracker.webhooks import commands as webhooks_commands

T = TypeVar("T")
cli = typer.Typer(
    help="Send SMS through KIMISMS and track every message to its final delivery status.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
keys_cli = typer.Typer(help="API keys for internal callers.", no_args_is_help=True)
callbacks_cli = typer.Typer(help="Delivery callbacks.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(callbacks_cli, name="callbacks")
cli.add_typer(keys_cli, name="keys")
err = Console(stderr=True)


def load_settings() -> Settings:
    settings = Settings.load()
    logs.configure(settings.log_format, settings.log_level)
    return settings


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


async def _with_database(settings: Settings, work: Any) -> Any:
    database = db.Database(settings.async_database_url)
    try:
        return await work(database)
    finally:
        await database.dispose()


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"tracker {tracker.__version__}")
        raise typer.Exit


@cli.callback()
def root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
) -> None:
    """Send SMS through KIMISMS and track every message to its final delivery status."""


# Over 40 lines: typer reads one annotated parameter per option; the body is short.
@cli.command()
def serve(  # noqa: PLR0917 - one parameter per CLI option
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    fd: Annotated[
        int | None,
        typer.Option(
            help="Serve on this inherited listening socket instead (systemd: --fd 3); "
            "--host and --port are then ignored.",
        ),
    ] = None,
    no_dispatcher: Annotated[
        bool, typer.Option("--no-dispatcher", help="Serve the API only; run `tracker worker`.")
    ] = False,
    no_webhooks: Annotated[
        bool,
        typer.Option(
            "--no-webhooks",
            help="Deliver no webhooks here; `tracker worker` processes deliver them.",
        ),
    ] = False,
    sandbox: Annotated[
        bool,
        typer.Option(
            "--sandbox", help="Use an in-process KIMISMS sandbox as the provider (for trials)."
        ),
    ] = False,
    sandbox_port: Annotated[int, typer.Option(help="Port of the --sandbox provider.")] = 8090,
) -> None:
    """Run the HTTP service: internal API, callback receiver, probes, the dispatcher and
    the webhook deliverer."""
    from tracker import server
    from tracker.app import create_app, freeze_startup_objects, stop_sending

    settings = load_settings()
    sock = server.inherited_socket(fd) if fd is not None else None
    if sock is not None:
        host, port = server.socket_host(sock), sock.getsockname()[1]
    startup.say_where_and_check_ports(
        settings, host, port, bind=sock is None, sandbox_port=sandbox_port if sandbox else None
    )
    if not (sandbox or no_dispatcher):
        settings.require_provider_credentials()
    startup.require_callback_secrets_off_loopback(settings, host)
    migrate.prepare_at_start(settings.async_database_url)
    with contextlib.ExitStack() as stack:
        if sandbox:
            settings = startup.with_sandbox(settings, stack, host, port, sandbox_port)
        app = create_app(settings, run_dispatcher=not no_dispatcher, run_deliverer=not no_webhooks)
        freeze_startup_objects()
        server.run(app, lambda: stop_sending(app), host=host, port=port, sock=sock)


@cli.command()
def worker() -> None:
    """Run the dispatcher (one leads per database; others wait as standby) and the webhook
    deliverer (every worker delivers), without the HTTP service."""
    settings = load_settings()
    settings.require_provider_credentials()
    migrate.prepare_at_start(settings.async_database_url)
    run(_run_worker(settings))


async def _run_worker(settings: Settings) -> None:
    from tracker.app import provider_client
    from tracker.dispatch import dispatcher
    from tracker.webhooks import deliverer

    database = db.Database(settings.async_database_url, settings.database_timeout_seconds)
    try:
        async with provider_client(settings) as http:
            hooks = deliverer.Deliverer(settings, database)
            sender = dispatcher.create(settings, database, http, webhook_doorbell=hooks.doorbell)

            def stop() -> None:
                sender.stop()
                hooks.stop()

            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop)
            beats = heartbeat.path_in(settings.data_dir)  # the liveness probe reads its age
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(heartbeat.beat(beats, sender.stopping))
                tasks.create_task(hooks.run())
                await sender.run()
    finally:
        await database.dispose()


@callbacks_cli.command("replay")
def callbacks_replay() -> None:
    """Apply spooled callbacks (kept while the database was unreachable)."""
    from tracker.privacy import scrub
    from tracker.reports import ingest
    from tracker.reports.spool import Spool

    settings = load_settings()
    spool = Spool(settings.spool_path)
    cap = settings.callback_reports_per_message
    conceal = scrub.concealer(settings.pseudonym_key_bytes())
    count = run(
        _with_database(settings, lambda d: ingest.replay(d, spool, cap=cap, conceal=conceal))
    )
    typer.echo(f"replayed {count} callbacks from {settings.spool_path}")


@db_cli.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Create or migrate the schema (safe to run again)."""
    settings = load_settings()
    migrate.upgrade(settings.async_database_url, revision)
    typer.echo(f"database at {migrate.head_revision() if revision == 'head' else revision}")


@keys_cli.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who uses the key (an app or team).")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: send, read, admin.")] = "send,read",
    client: Annotated[
        str | None,
        typer.Option(
            help="The client it belongs to (see `tracker clients create`); default: the "
            "client named like the key, created if missing."
        ),
    ] = None,
) -> None:
    """Create a key. It is printed once, alone on the last line; only its hash is kept."""
    settings = load_settings()
    parsed = auth.parse_scopes(scopes)
    try:
        key = run(
            _with_database(settings, lambda d: auth.create_key(d, name, parsed, client=client))
        )
    except records.UnknownClient as exc:
        raise errors.NotFound(str(exc)) from None
    owner = client or name
    err.print(
        f"created key {name!r} of client {owner!r} with scopes {','.join(sorted(parsed))};"
        " store it now:"
    )
    typer.echo(key)


@keys_cli.command("list")
def keys_list() -> None:
    """List keys (names, prefixes and scopes; never the keys)."""
    settings = load_settings()
    keys: list[auth.KeyInfo] = run(_with_database(settings, auth.list_keys))
    table = Table("name", "client", "prefix", "scopes", "created", "state")
    for key in keys:
        state = "revoked" if key.revoked else "active"
        scopes = ",".join(key.scopes)
        table.add_row(key.name, key.client, key.prefix + "…", scopes, key.created_at, state)
    views.show(Console(), table)  # plain in a pipe


@keys_cli.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke the active key of that name at once (its client keeps its other keys)."""
    settings = load_settings()
    if not run(_with_database(settings, lambda d: auth.revoke_key(d, name))):
        raise errors.NotFound(f"no active key named {name!r}")
    typer.echo(f"revoked {name}")


@cli.command()
def demo(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for final statuses.")] = 90.0,
) -> None:
    """Run the whole loop here (sandbox, tracker, a few messages) and watch them finish."""
    from tracker import demo as demo_module

    logs.configure("console", "WARNING")
    if not demo_module.run(timeout):
        raise typer.Exit(1)


def _register_sandbox() -> None:
    from tracker.sandbox.cli import run as run_sandbox

    cli.command("sandbox", help="Run the KIMISMS sandbox alone (a fake provider with faults).")(
        run_sandbox
    )


_register_sandbox()
commands.register(cli)  # send, messages, stats, watch: over the HTTP API
clients_commands.register(cli, load_settings)  # clients: the database directly, like keys
webhooks_commands.register(cli, load_settings)  # webhooks: the database directly, too
privacy_commands.register(cli, load_settings)  # privacy erase: the database directly
retention_commands.register(cli, load_settings)  # retention run: the database directly


def main() -> None:
    """Entry point: a caller's mistake is one line on stderr, never a traceback."""
    try:
        command = _plain(typer.main.get_command(cli))
        sys.exit(command.main(prog_name="tracker", standalone_mode=False))
    except click_errors.NoArgsIsHelpError as exc:  # `tracker keys`: its help, as click does
        exc.show()
        sys.exit(2)
    except click_errors.ClickException as exc:  # a usage mistake: one line, and the help to read
        typer.echo(f"error: {exc.format_message()}{_help_hint(exc)}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except errors.DatabaseUnavailable as exc:  # say what the driver said, and what to do
        cause = exc.__cause__
        problem = _database_problem(cause) if isinstance(cause, sa_exc.SQLAlchemyError) else exc
        typer.echo(f"error: {problem}", err=True)
        sys.exit(2)
    except (errors.TrackerError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except sa_exc.SQLAlchemyError as exc:
        typer.echo(f"error: {_database_problem(exc)}", err=True)
        sys.exit(2)


def _plain(command: Any) -> Any:
    """Plain click help: no boxes, no ``<bool>`` metavars, fine at 80 columns."""
    command.rich_markup_mode = None
    for sub in getattr(command, "commands", {}).values():
        _plain(sub)
    return command


def _help_hint(exc: click_errors.ClickException) -> str:
    context = getattr(exc, "ctx", None)
    return f" (see `{context.command_path} --help`)" if context is not None else ""


def _database_problem(exc: sa_exc.SQLAlchemyError) -> str:
    """The driver's own first line, and what to do about the common cases."""
    first_line = db.driver_message(exc)
    hint = ""
    if first_line.startswith("database ") and "does not exist" in first_line:
        hint = " (create it, or check TRACKER_DATABASE_URL)"
    elif "no such table" in first_line or "does not exist" in first_line:
        hint = " (is the schema migrated? run `tracker db upgrade`; check TRACKER_DATABASE_URL)"
    elif isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        hint = " (is the database reachable? check TRACKER_DATABASE_URL)"
    return f"database: {first_line}{hint}"
