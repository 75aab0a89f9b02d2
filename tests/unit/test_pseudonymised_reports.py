"""Pure code around pseudonymised messages (#17): the report plan and the CLI's ``to``."""

from __future__ import annotations

import json
import uuid

from rich.console import Console

from tracker import clock
from tracker.console import views
from tracker.domain import status
from tracker.reports import plan, reading

NUMBER = "254712345678"


def _receipt(message_id: uuid.UUID) -> reading.Receipt:
    body = json.dumps({"message_id": "p-1", "contact": NUMBER, "status": "Delivered",
                       "description": "Delivered to 0712 345 678"})  # fmt: skip
    return reading.Receipt(message_id, body, None, clock.utcnow())


def _stored(message_id: uuid.UUID, contact: str) -> plan.Stored:
    return plan.Stored(snapshots={message_id: plan.Snapshot(status.Status.PENDING, contact, "p-1")})


def _hide(text: str) -> str:
    return text.replace(NUMBER, "#hash").replace("0712 345 678", "#hash")


def test_a_report_about_a_pseudonymised_message_is_applied_and_concealed() -> None:
    """Contact '' is not a contradiction; the receipt, event and description lose the number."""
    message_id = uuid.uuid4()
    decided = plan.decide([_receipt(message_id)], _stored(message_id, ""), conceal=_hide)
    assert decided.outcomes == [plan.Outcome.APPLIED]
    (receipt,), (event,) = decided.receipts, decided.events
    assert "#hash" in receipt.body
    assert "#hash" in event.payload
    assert decided.moves[message_id].description == "Delivered to #hash"
    assert "712" not in receipt.body + event.payload


def test_a_report_about_a_message_with_its_number_is_stored_as_received() -> None:
    """Conceal touches only pseudonymised messages; a wrong contact is still a mismatch."""
    message_id = uuid.uuid4()
    decided = plan.decide([_receipt(message_id)], _stored(message_id, NUMBER), conceal=_hide)
    assert decided.outcomes == [plan.Outcome.APPLIED]
    assert NUMBER in decided.receipts[0].body
    wrong = plan.decide([_receipt(message_id)], _stored(message_id, "254722000111"))
    assert wrong.outcomes == [plan.Outcome.MISMATCH]


def test_the_cli_shows_a_pseudonymised_number_as_the_start_of_its_hash() -> None:
    """``#`` and ten hex characters in lists and in ``messages show``; the number otherwise."""
    item = {"id": str(uuid.uuid4()), "status": "delivered", "to": None, "to_pseudonym": "ab" * 32,
            "created_at": "2026-12-01T10:00:00+00:00", "segments": 1, "client": "app"}  # fmt: skip
    assert views.recipient(item) == "#ababababab"
    assert views.recipient({**item, "to": NUMBER}) == NUMBER
    console = Console(width=200, no_color=True)
    with console.capture() as listed:
        console.print(views.messages_table([item]))
    with console.capture() as shown:
        console.print(views.message_table(item))
    assert "#ababababab" in listed.get()
    assert "#ababababab" in shown.get()
    assert "abababababab" not in shown.get()
