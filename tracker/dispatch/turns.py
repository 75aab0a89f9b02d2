"""Whose turn it is: strict lanes, then weighted round robin across clients.

Lanes are the priorities (``high`` before ``normal`` before ``low``), strictly:
the lowest lane with a due message is the one served. Within it, stride
scheduling: each client has a pass in the lane (``dispatch_turns``), the lane a
virtual time (``dispatch_lanes``, the pass of its last turn). A client's
effective pass is the larger of the two, so one that comes back after idling
neither bursts on credit saved meanwhile nor waits behind the others' history.
The client with the lowest effective pass (ties by name) goes next; its pass
then moves on by ``1 / weight``, so a client of weight 2 gets two turns to
another's one. The state lives in tables: it holds across restarts.

The candidates are read from ``clients`` with an EXISTS over ``messages`` per
lane (an index probe on ``ix_messages_claim`` each), so a claim costs
O(clients), however many rows are due.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Double,
    SmallInteger,
    case,
    exists,
    literal,
    literal_column,
    select,
    union_all,
)
from sqlalchemy import true as sql_true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import models
from tracker.domain import status

LANES = tuple(sorted(status.PRIORITY_ORDER.values()))


@dataclass(frozen=True)
class Turn:
    """The client to serve next, in which lane, and the pass it is served at."""

    client: str
    priority: int
    weight: int
    effective: float  # max(the client's pass in the lane, the lane's virtual time)

    @property
    def next_pass(self) -> float:
        """The client's pass after this turn (a weight below 1 counts as 1)."""
        return self.effective + 1.0 / max(self.weight, 1)


def _lanes() -> Any:
    """The lanes as a derived table (constants inline: one statement text for every claim)."""
    rows = [select(literal_column(str(lane), SmallInteger).label("priority")) for lane in LANES]
    return union_all(*rows).subquery("lanes")


async def next_turn(session: AsyncSession, due: Any) -> Turn | None:
    """The turn to take among clients with a message matching ``due``; None: nothing due."""
    c, t, v, m = models.Client, models.DispatchTurn, models.DispatchLane, models.Message
    lanes = _lanes()
    zero = literal(0.0, Double)
    own = case((t.pass_value.is_(None), zero), else_=t.pass_value)
    lane_time = case((v.virtual_time.is_(None), zero), else_=v.virtual_time)
    # CASE rather than GREATEST / MAX(a, b): one expression serves both databases.
    effective = case((own > lane_time, own), else_=lane_time).label("effective")
    has_due = exists().where(due, m.client == c.name, m.priority == lanes.c.priority)
    row = (
        await session.execute(
            select(c.name, c.weight, lanes.c.priority, effective)
            .select_from(c)
            .join(lanes, sql_true())
            .outerjoin(t, (t.client == c.name) & (t.priority == lanes.c.priority))
            .outerjoin(v, v.priority == lanes.c.priority)
            .where(has_due)
            .order_by(lanes.c.priority, effective, c.name)
            .limit(1)
        )
    ).one_or_none()
    if row is None:
        return None
    return Turn(row.name, int(row.priority), int(row.weight or 1), float(row.effective))


async def advance(session: AsyncSession, turn: Turn) -> None:
    """Record the turn taken: the client's pass moves on, the lane's time follows."""
    connection = await session.connection()
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    t, v = models.DispatchTurn, models.DispatchLane
    passed = turn.next_pass
    await session.execute(
        dialect.insert(t)
        .values(client=turn.client, priority=turn.priority, pass_value=passed)
        .on_conflict_do_update(index_elements=[t.client, t.priority], set_={"pass_value": passed})
    )
    await session.execute(
        dialect.insert(v)
        .values(priority=turn.priority, virtual_time=turn.effective)
        .on_conflict_do_update(index_elements=[v.priority], set_={"virtual_time": turn.effective})
    )
