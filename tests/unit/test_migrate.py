"""Which schema revisions this code knows (no database needed)."""

from __future__ import annotations

import pytest
from alembic.script import ScriptDirectory

from tracker import migrate


def test_item_17_unknown_revisions_are_recognised_by_alembics_own_error() -> None:
    """Item 17: an id alembic cannot locate (or an empty one) is unknown, not a crash."""
    head = migrate.head_revision()
    assert head is not None
    assert migrate.is_known_revision(head)
    assert not migrate.is_known_revision("ffffffffffff")
    assert not migrate.is_known_revision("")


def test_item_17_other_failures_are_not_mistaken_for_an_unknown_revision(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Item 17: only alembic's CommandError means "unknown"; a real fault propagates."""

    def broken(_self: ScriptDirectory, _revision: str) -> None:
        raise RuntimeError("migrations directory unreadable")

    monkeypatch.setattr(ScriptDirectory, "get_revision", broken)
    with pytest.raises(RuntimeError, match="unreadable"):
        migrate.is_known_revision("0001")
