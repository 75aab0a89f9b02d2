"""The dashboard's pure parts: chart buckets, tile links, the login redirect's target."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlsplit

from tracker.dashboard import charts, counts, login, overview

NOW = dt.datetime(2026, 12, 2, 7, 30, tzinfo=dt.UTC)


def test_series_has_one_slot_per_hour_with_counts_and_rates() -> None:
    """A 24 h window has 25 hourly slots; delivered/failed give the rate, waits the p50."""
    since = NOW - dt.timedelta(hours=24)
    hour = NOW.replace(minute=0)
    buckets = [(hour, "status", "delivered", 3), (hour, "status", "failed", 1),
               (hour, "status", "queued", 2), (hour, "ttd", "2", 3)]  # fmt: skip
    found = charts.series(buckets, since, NOW)
    assert len(found["t"]) == 25
    assert found["t"][-1] == int(hour.timestamp())
    assert (found["sent"][-1], found["delivered"][-1], found["failed"][-1]) == (6, 3, 1)
    assert found["rate"][-1] == 0.75
    assert found["p50"][-1] == 2.5  # the middle of bin 2, [2 s, 3 s)
    assert found["rate"][0] is None


def test_a_30_day_window_is_charted_by_day() -> None:
    """Days, not hours, past one day: 31 slots, hours of one day added together."""
    since = NOW - dt.timedelta(days=30)
    buckets = [
        (NOW.replace(hour=1, minute=0), "status", "delivered", 2),
        (NOW.replace(minute=0), "status", "delivered", 5),
    ]
    found = charts.series(buckets, since, NOW)
    assert len(found["t"]) == 31
    assert found["delivered"][-1] == 7


def test_tile_links_filter_the_list_to_the_rows_behind_them() -> None:
    """The failed tile's link names the status, the window's start and the client."""
    link = urlsplit(overview.messages_link(status="failed", created_after="T", client="app"))
    assert link.path == "/dashboard/messages"
    assert parse_qs(link.query) == {"status": ["failed"], "created_after": ["T"], "client": ["app"]}
    both = parse_qs(urlsplit(overview.messages_link(status=["delivered", "failed"])).query)
    assert both == {"status": ["delivered", "failed"]}


def test_the_login_only_returns_to_our_own_pages() -> None:
    """An absolute or scheme-relative ``next`` becomes /dashboard (no open redirect)."""
    assert login._next("/dashboard/messages?status=failed") == "/dashboard/messages?status=failed"
    assert login._next("https://evil.example/") == "/dashboard"
    assert login._next("//evil.example/dashboard") == "/dashboard"
    assert login._next(None) == "/dashboard"


def test_next_hour_rounds_up_except_on_the_hour() -> None:
    """A window's first whole hour: the next one, or the start itself when it is whole."""
    assert counts.next_hour(NOW) == NOW.replace(hour=8, minute=0)
    on_the_hour = NOW.replace(minute=0)
    assert counts.next_hour(on_the_hour) == on_the_hour


def test_percentiles_are_estimated_inside_their_bin() -> None:
    """Bins match the migration's edges; an estimate lies inside the bin holding the rank."""
    assert counts.delivery_bin(0.5) == 0
    assert counts.delivery_bin(2.0) == 2
    assert counts.delivery_bin(10**6) == len(counts.DELIVERY_EDGES) - 1
    assert counts.estimate({}, 0.5) is None
    histogram = {counts.delivery_bin(5): 90, counts.delivery_bin(100): 10}
    assert 5 <= (counts.estimate(histogram, 0.5) or 0) < 6
    assert 100 <= (counts.estimate(histogram, 0.95) or 0) < 120


def test_the_bins_are_the_migrations() -> None:
    """The reader's edges and the trigger's CASE come from one list, copied: they must agree."""
    import importlib

    migration = importlib.import_module("tracker.migrations.versions.0005_message_counts")
    assert migration.DELIVERY_EDGES == counts.DELIVERY_EDGES
