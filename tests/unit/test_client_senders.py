"""A client's sender names and default, within TRACKER_SENDER_NAMES (no database)."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.conftest import SettingsFactory
from tracker import errors
from tracker.clients import records
from tracker.sending import intake, schemas
from tracker.settings import Settings

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings(sender_names="KIMISMS,ACME,SHOP")


def senders(settings: Settings, **fields: object) -> tuple[tuple[str, ...], str | None]:
    return intake.allowed_senders(settings, records.Client("billing", **fields))  # type: ignore[arg-type]


def test_a_client_without_a_list_may_use_every_sender_and_defaults_to_the_first(
    settings: Settings,
) -> None:
    """sender_names None: all of TRACKER_SENDER_NAMES, the first as default (as before)."""
    assert senders(settings) == (("KIMISMS", "ACME", "SHOP"), "KIMISMS")
    assert intake.allowed_senders(settings, None) == (("KIMISMS", "ACME", "SHOP"), "KIMISMS")


def test_a_clients_list_is_its_senders_and_its_first_the_default(settings: Settings) -> None:
    """With a list and no default_sender, the first of its own list is the default."""
    assert senders(settings, sender_names=("SHOP", "ACME")) == (("SHOP", "ACME"), "SHOP")


def test_a_clients_default_sender_is_used_when_it_is_allowed(settings: Settings) -> None:
    """default_sender wins over the first name, with or without a list."""
    assert senders(settings, default_sender="ACME") == (("KIMISMS", "ACME", "SHOP"), "ACME")
    assert senders(settings, sender_names=("SHOP", "ACME"), default_sender="ACME")[1] == "ACME"


def test_names_dropped_from_the_setting_are_allowed_to_no_client(settings: Settings) -> None:
    """A client's list stays within TRACKER_SENDER_NAMES; a stale default falls back."""
    assert senders(settings, sender_names=("OLD", "ACME"), default_sender="OLD") == (
        ("ACME",),
        "ACME",
    )
    assert senders(settings, sender_names=("OLD",)) == ((), None)


def test_a_client_left_with_no_sender_gets_a_400_on_sender_name(settings: Settings) -> None:
    """No allowed sender at all: a field error, never a 500."""
    policy = records.Client("billing", sender_names=("OLD",))
    rules = intake.Intake(settings, "billing", NOW, policy)
    request = schemas.SendRequest.model_validate({"to": "0712345678", "message": "hi"})
    with pytest.raises(errors.ValidationFailed) as raised:
        rules.row(request)
    assert raised.value.errors == {"sender_name": ["client 'billing' has no allowed sender name"]}
