"""`tracker demo` runs the whole loop from nothing and ends with every message final."""

from __future__ import annotations

import sys

from tests.processes import run_tracker


def test_the_demo_ends_with_every_message_final() -> None:
    """Sandbox, tracker, key, sends, callbacks: all final, exit 0, and it cleans up."""
    result = run_tracker("demo", "--timeout", "60", env={"COLUMNS": "120"}, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "all messages final" in result.stdout
    assert "delivered" in result.stdout
    assert "failed" in result.stdout  # the sandbox's failing number
    assert "is not a Kenyan mobile" in result.stdout  # the invalid number, refused
    assert "KEY=$(" in result.stdout  # the hints set $KEY, with the command as it was run
    assert f"TRACKER_API_KEY=$KEY {sys.executable} -m tracker stats" in result.stdout
