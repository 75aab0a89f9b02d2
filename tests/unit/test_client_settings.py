"""One rule set for a client's settings (clients.schemas), and the CLI's reading of options."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import SettingsFactory
from tracker import errors
from tracker.clients import commands, records, schemas
from tracker.settings import Settings


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings(sender_names="KIMISMS,ACME,ALERTS")


def problems_of(data: dict[str, Any], settings: Settings) -> dict[str, list[str]]:
    with pytest.raises(errors.ValidationFailed) as caught:
        schemas.parse_new({"name": "billing", **data}, settings)
    return caught.value.errors


def test_a_valid_client_gives_only_the_fields_given(settings: Settings) -> None:
    """Absent fields stay absent (the table's defaults apply); null is kept (no limit)."""
    name, values = schemas.parse_new(
        {"name": "billing", "sender_names": ["ACME"], "daily_cap": None}, settings
    )
    assert (name, values) == ("billing", {"sender_names": ["ACME"], "daily_cap": None})


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"rate_per_minute": 0}, {"rate_per_minute": ["must be at least 1"]}),
        ({"daily_cap": 10_000_001}, {"daily_cap": ["must be at most 10000000"]}),
        ({"weight": 0}, {"weight": ["must be at least 1"]}),
        ({"weight": 101}, {"weight": ["must be at most 100"]}),
        ({"weight": False}, {"weight": ["must be an integer"]}),
        ({"high_per_minute": "5"}, {"high_per_minute": ["must be an integer"]}),
        ({"sender_names": "ACME"}, {"sender_names": ["must be a list of names"]}),
        ({"sender_names": ["ACME", 7]}, {"sender_names[1]": ["must be a string"]}),
        ({"sender_names": [""]}, {"sender_names[0]": ["must not be empty"]}),
        (
            {"sender_names": ["acme"]},
            {"sender_names": ["'acme' not in TRACKER_SENDER_NAMES (KIMISMS, ACME, ALERTS)"]},
        ),
        (
            {"default_sender": "ALERTS", "sender_names": ["ACME", "KIMISMS"]},
            {"default_sender": ["'ALERTS' is not one of its senders (ACME, KIMISMS)"]},
        ),
        ({"name": "x" * 65}, {"name": ["must be at most 64 characters"]}),
        ({"name": "bill ing"}, {"name": ["must be letters, digits, '-' or '_'"]}),
        ({"name": "bïll"}, {"name": ["must be letters, digits, '-' or '_'"]}),
    ],
)
def test_each_rule_names_its_field(
    settings: Settings, data: dict[str, Any], expected: dict[str, list[str]]
) -> None:
    """Limits are 1..10,000,000, weight 1..100, senders a subset and the default among them."""
    assert problems_of(data, settings) == expected


def test_the_name_rules_match_the_records_check(settings: Settings) -> None:
    """What the model accepts as a name, records.check_name accepts too."""
    for name in ("a", "billing-2026", "Billing_App", "x" * 64):
        assert schemas.parse_new({"name": name}, settings)[0] == records.check_name(name)


def test_only_what_changes_is_checked_against_the_sender_list(settings: Settings) -> None:
    """A client set up before a sender left TRACKER_SENDER_NAMES can still change its limits,
    but cannot be given that sender again."""
    old = records.Client("billing", sender_names=("RETIRED",), default_sender="RETIRED")
    assert schemas.parse_changes({"weight": 4}, old, settings) == {"weight": 4}
    with pytest.raises(errors.ValidationFailed) as caught:
        schemas.parse_changes({"sender_names": ["RETIRED"]}, old, settings)
    assert list(caught.value.errors) == ["sender_names"]


def test_clearing_the_senders_checks_the_default_against_all_of_them(settings: Settings) -> None:
    """sender_names null means every allowed sender, so the default must be one of those."""
    current = records.Client("billing", sender_names=("ACME",), default_sender="ACME")
    assert schemas.parse_changes({"sender_names": None}, current, settings) == {
        "sender_names": None
    }


@pytest.mark.parametrize(
    ("given", "data"),
    [
        ({"rate_per_minute": "30"}, {"rate_per_minute": 30}),
        ({"daily_cap": " 7 "}, {"daily_cap": 7}),
        ({"daily_cap": "none"}, {"daily_cap": None}),
        ({"high_per_minute": "None"}, {"high_per_minute": None}),
        ({"sender_names": "ACME, ALERTS"}, {"sender_names": ["ACME", "ALERTS"]}),
        ({"sender_names": "all"}, {"sender_names": None}),
        ({"default_sender": "none"}, {"default_sender": None}),
        ({"weight": "2", "daily_cap": None}, {"weight": 2}),
    ],
)
def test_options_are_read_as_the_api_would_take_them(
    given: dict[str, str | None], data: dict[str, Any]
) -> None:
    """Numbers become integers, 'none' null, --senders a list ('all': null); absent stays out."""
    assert commands.options_given(**given) == data


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"daily_cap": "5.0"}, "--daily-cap: must be a whole number, or 'none' to remove it"),
        ({"rate_per_minute": "٣"}, "--rate-per-minute: must be a whole number, or 'none' to"),
        ({"weight": "none"}, "--weight: must be a whole number"),
    ],
)
def test_an_option_that_is_not_a_number_is_named(given: dict[str, str], message: str) -> None:
    """The error names the option as typed."""
    with pytest.raises(errors.ValidationFailed) as caught:
        commands.options_given(**given)
    assert str(caught.value).startswith(message)


def test_the_apis_field_errors_are_renamed_to_options() -> None:
    """sender_names[1] -> --senders, name -> NAME: one line names what the user typed."""
    renamed = commands.as_options({"sender_names[1]": ["must be a string"], "name": ["bad"]})
    assert renamed.errors == {"--senders": ["must be a string"], "NAME": ["bad"]}
