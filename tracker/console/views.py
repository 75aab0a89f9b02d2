"""Renderings of API answers for the ops commands (``console.commands``).

Rich tables on a terminal, readable at 80 columns; plain aligned text in a pipe.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from tracker.console import bulk
from tracker.domain import recipients

STATUS_STYLES = {
    "queued": "cyan",
    "sending": "blue",
    "pending": "yellow",
    "delivered": "green",
    "failed": "red",
    "rejected": "red",
    "expired": "magenta",
    "cancelled": "dim",
}
MAX_REFUSED_SHOWN = 50


def when(value: str | None) -> str:
    """An API timestamp as ``2026-11-25 04:59:32`` (UTC)."""
    if not value:
        return ""
    stamp = dt.datetime.fromisoformat(value).astimezone(dt.UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S")


def status_text(item: Mapping[str, Any]) -> Text:
    text = Text(item["status"], style=STATUS_STYLES.get(item["status"], ""))
    if item.get("overdue"):
        text.append(" overdue", style="bold red")
    return text


def recipient(item: Mapping[str, Any]) -> str:
    """The number, or once pseudonymised ``#`` and the start of its keyed hash."""
    return recipients.shown(item.get("to"), item.get("to_pseudonym"))


WIDE_COLUMNS = 110  # below this a terminal gets the narrow messages table (80 fit)


def is_wide(console: Console) -> bool:
    """Room for every column: a wide terminal, or a pipe (which never wraps)."""
    return not console.is_terminal or console.width >= WIDE_COLUMNS


def messages_table(
    items: Iterable[Mapping[str, Any]], title: str | None = None, *, wide: bool = True
) -> Table:
    """Messages as rows, full ids always; narrow (80 columns) drops parts, client, reference."""
    table = Table(title=title, box=box.HEAVY_HEAD if wide else box.SIMPLE_HEAD, pad_edge=wide)
    table.add_column("created (UTC)" if wide else "created", no_wrap=True)
    table.add_column("id", no_wrap=True, min_width=36)  # `messages show` needs all of it
    table.add_column("to", no_wrap=True)
    table.add_column("status", min_width=9)  # "delivered"; "overdue" wraps below it
    for name in ("parts", "client", "reference") if wide else ():
        table.add_column(name)
    for item in items:
        created = when(item["created_at"])
        row = [created if wide else created[5:16], item["id"], recipient(item), status_text(item)]
        if wide:
            row += [str(item["segments"]), item["client"], item.get("reference") or ""]
        table.add_row(*row)
    return table


def show(console: Console, *renderables: Any) -> None:
    """Print on a terminal as is; in a pipe plain: no box drawing, no wrapping, no colour."""
    if console.is_terminal:
        console.print(*renderables)
        return
    wide = Console(width=10_000, no_color=True, highlight=False, force_terminal=False)
    with wide.capture() as captured:
        for renderable in renderables:
            caption = renderable.caption if isinstance(renderable, Table) else None
            if caption is not None:  # under the table, not wrapped to its width
                renderable.caption = None
            wide.print(_unboxed(renderable))
            if caption is not None:
                wide.print(caption)
    for line in captured.get().splitlines():
        console.out(line.rstrip(), highlight=False)


def _unboxed(renderable: Any) -> Any:
    if isinstance(renderable, Group):
        for part in renderable.renderables:
            _unboxed(part)
    if isinstance(renderable, Table):
        renderable.box = None
        renderable.show_edge = False
        renderable.pad_edge = False
        renderable.title_justify = "left"
    return renderable


MESSAGE_FIELDS = (
    "id", "status", "to", "network", "sender_name", "segments", "encoding", "priority",
    "reference", "client", "provider_message_id", "provider_status", "provider_description",
    "attempts", "error", "created_at", "send_at", "expires_at", "submitted_at", "accepted_at",
    "final_at", "redacted_at", "pseudonymised_at",
)  # fmt: skip


def message_table(found: Mapping[str, Any]) -> Table:
    table = Table(show_header=False, title=f"message {found['id']}")
    table.add_column("field", style="bold")
    table.add_column("value")
    for name in MESSAGE_FIELDS:
        value = recipient(found) if name == "to" else found.get(name)
        if value is None or value == "":
            continue
        shown = when(value) if name.endswith("_at") else str(value)
        table.add_row(name, status_text(found) if name == "status" else shown)
    if found.get("metadata") is not None:
        table.add_row("metadata", json.dumps(found["metadata"], ensure_ascii=False))
    return table


def timeline_table(events: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(title="timeline")
    for name in ("at (UTC)", "change", "source", "detail"):
        table.add_column(name, no_wrap=name == "at (UTC)")
    for event in events:
        before, after = event.get("from_status"), event.get("to_status")
        change = f"{before or '·'} → {after}" if after else f"{before or '·'} (recorded)"
        table.add_row(when(event["created_at"]), change, event["source"], event.get("detail") or "")
    return table


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} s"


def stats_table(stats: Mapping[str, Any]) -> Table:
    table = Table(
        show_header=False,
        title=f"stats for {stats['client'] or 'all clients'}",
    )
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("created from (UTC)", when(stats["since"]))
    table.add_row("created to (UTC)", when(stats["until"]))
    for status, count in stats["counts"].items():
        table.add_row(Text(status, style=STATUS_STYLES.get(status, "")), f"{count:,}")
    rate = stats["delivery_rate"]
    table.add_row("total", f"{stats['total']:,}")
    table.add_row("delivery rate", "-" if rate is None else f"{rate:.1%}")
    table.add_row("units billed", f"{stats['units_billed']:,}")
    ttd = stats["time_to_delivery_seconds"]
    for name in ("p50", "p95", "p99"):
        table.add_row(f"time to delivery {name}", _seconds(ttd[name]))
    queue = stats["queue"]
    table.add_row("queue depth (due now)", f"{queue['depth']:,}")
    table.add_row("scheduled", f"{queue['scheduled']:,}")
    table.add_row("oldest queued", _seconds(queue["oldest_queued_age_seconds"]))
    table.add_row("drain time", _seconds(queue["drain_seconds"]))
    table.add_row("overdue (now)", f"{stats['overdue']:,}")
    table.add_row("provider 429s", f"{stats['provider']['rate_limited']:,}")
    table.add_row("provider errors", f"{stats['provider']['errors']:,}")
    quota = stats.get("quota")  # one client's admission counts; None over every client
    if quota:
        for name, label in QUOTA_ROWS:
            table.add_row(label, _used_of(quota[name]))
    return table


QUOTA_ROWS = (
    ("rate_per_minute", "accepted, last 60 s"),
    ("daily_cap", "accepted today (Nairobi)"),
    ("high_per_minute", "high priority, last 60 s"),
)


def _used_of(count: Mapping[str, Any]) -> str:
    limit = count["limit"]
    return f"{count['used']:,} of {'no limit' if limit is None else f'{limit:,}'}"


def watch_view(
    items: list[Mapping[str, Any]], stats: Mapping[str, Any], *, wide: bool = False
) -> Group:
    counts = ", ".join(f"{k} {v}" for k, v in stats["counts"].items() if v)
    queue = stats["queue"]
    line = Text(
        f"last 15 min: {counts or 'nothing'} | queue {queue['depth']} due, "
        f"drains in {_seconds(queue['drain_seconds'])} | overdue {stats['overdue']}"
    )
    title = f"latest {len(items)} messages"
    return Group(line, messages_table(items, title=title, wide=wide))


def print_bulk_outcome(console: Console, outcome: bulk.Outcome, as_json: bool) -> None:
    if as_json:
        data = {
            "accepted": [{"line": line, "id": i} for line, i in outcome.accepted],
            "refused": [{"line": r.line, "to": r.to, "errors": r.errors} for r in outcome.refused],
        }
        console.out(json.dumps(data, indent=2, ensure_ascii=False), highlight=False)
        return
    total = len(outcome.accepted) + len(outcome.refused)
    console.out(
        f"accepted {len(outcome.accepted)} of {total} rows, refused {len(outcome.refused)}",
        highlight=False,
    )
    if not outcome.refused:
        return
    table = Table(title="refused rows")
    for name in ("line", "to", "reason"):
        table.add_column(name)
    for refused in outcome.refused[:MAX_REFUSED_SHOWN]:
        reasons = "; ".join(f"{k}: {', '.join(v)}" for k, v in refused.errors.items())
        table.add_row(str(refused.line), refused.to, reasons)
    show(console, table)
    if len(outcome.refused) > MAX_REFUSED_SHOWN:
        console.out(f"... and {len(outcome.refused) - MAX_REFUSED_SHOWN} more (--json lists all)")
