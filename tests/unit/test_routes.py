"""The app's routing table: one handler per method and path (issue 12, item 19)."""

from __future__ import annotations

from collections import Counter

from starlette.routing import Route

from tests.conftest import SettingsFactory
from tracker.app import create_app


def test_item_19_every_method_and_path_has_exactly_one_handler(
    make_settings: SettingsFactory,
) -> None:
    """No route is shadowed by an earlier one: no (method, path) pair appears twice."""
    app = create_app(make_settings())
    pairs = Counter(
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
    )
    assert [pair for pair, count in pairs.items() if count > 1] == []
    assert pairs["POST", "/v1/messages"] == 1
