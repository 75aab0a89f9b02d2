"""``tracker serve`` with the ingester answering at once, for ``callback_ingest``.

    python -m bench.ceiling_app serve --no-dispatcher --port N

The same process, routes, token check, log line and metrics as the real
server, but no database and no spool: what our callback endpoint costs when
the group commit costs nothing. Its rate against the bare Starlette endpoint
is the ceiling for the real receiver's ratio on this machine. A diagnostic:
never run it in front of KIMISMS, it keeps nothing.
"""

from __future__ import annotations

from tracker import cli
from tracker.reports import ingest, plan, reading


async def _answer_at_once(_ingester: ingest.Ingester, _receipt: reading.Receipt) -> str:
    return plan.Outcome.APPLIED


ingest.Ingester.submit = _answer_at_once  # type: ignore[assignment,method-assign]

if __name__ == "__main__":
    cli.main()
