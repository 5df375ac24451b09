"""Cron slot arithmetic in IANA time zones, across daylight-saving changes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triggerfish._cron import CronError, parse_cron


def at(zone: str, *args: int, fold: int = 0) -> float:
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold).timestamp()  # type: ignore[misc, arg-type]


def local(zone: str, epoch: float) -> str:
    value = datetime.fromtimestamp(epoch, UTC).astimezone(ZoneInfo(zone))
    return value.strftime("%Y-%m-%d %H:%M %Z")


def slots(expr: str, zone: str, start: float, count: int) -> list[str]:
    return [local(zone, t) for t in parse_cron(expr, zone).upcoming(start, count)]


# -- spring forward: the wall time does not exist that day ---------------------------


def test_new_york_spring_forward_daily_0230_runs_once_at_0300() -> None:
    # 2026-03-08: clocks jump from 02:00 EST to 03:00 EDT
    got = slots("30 2 * * *", "America/New_York", at("America/New_York", 2026, 3, 7, 12), 3)
    assert got == [
        "2026-03-08 03:00 EDT",
        "2026-03-09 02:30 EDT",
        "2026-03-10 02:30 EDT",
    ]


def test_london_spring_forward_daily_0130_runs_once_at_0200() -> None:
    # 2026-03-29: clocks jump from 01:00 GMT to 02:00 BST
    got = slots("30 1 * * *", "Europe/London", at("Europe/London", 2026, 3, 28, 12), 3)
    assert got == [
        "2026-03-29 02:00 BST",
        "2026-03-30 01:30 BST",
        "2026-03-31 01:30 BST",
    ]


def test_sydney_spring_forward_is_in_october() -> None:
    # 2026-10-04: clocks jump from 02:00 AEST to 03:00 AEDT
    got = slots("15 2 * * *", "Australia/Sydney", at("Australia/Sydney", 2026, 10, 3, 12), 2)
    assert got == ["2026-10-04 03:00 AEDT", "2026-10-05 02:15 AEDT"]


def test_interval_schedule_has_no_slots_inside_the_skipped_hour() -> None:
    got = slots("*/30 * * * *", "America/New_York", at("America/New_York", 2026, 3, 8, 1, 10), 3)
    assert got == ["2026-03-08 01:30 EST", "2026-03-08 03:00 EDT", "2026-03-08 03:30 EDT"]


# -- fall back: the wall time happens twice --------------------------------------------


def test_new_york_fall_back_daily_0130_runs_once() -> None:
    # 2026-11-01: 01:00-02:00 happens twice (EDT, then EST)
    got = slots("30 1 * * *", "America/New_York", at("America/New_York", 2026, 10, 31, 12), 3)
    assert got == [
        "2026-11-01 01:30 EDT",
        "2026-11-02 01:30 EST",
        "2026-11-03 01:30 EST",
    ]


def test_london_fall_back_daily_0130_runs_once() -> None:
    # 2026-10-25: 01:00-02:00 happens twice (BST, then GMT)
    got = slots("30 1 * * *", "Europe/London", at("Europe/London", 2026, 10, 24, 12), 2)
    assert got == ["2026-10-25 01:30 BST", "2026-10-26 01:30 GMT"]


def test_fall_back_slot_is_not_repeated_when_starting_inside_the_second_pass() -> None:
    # a server that comes up during the second 01:xx must not fire 01:30 again
    spec = parse_cron("30 1 * * *", "America/New_York")
    second_pass = at("America/New_York", 2026, 11, 1, 1, 40, fold=1)
    first_slot = at("America/New_York", 2026, 11, 1, 1, 30, fold=0)
    assert spec.latest_at_or_before(second_pass) == first_slot
    assert local("America/New_York", spec.next_after(second_pass) or 0) == "2026-11-02 01:30 EST"


def test_hourly_schedule_fires_in_both_passes_of_the_repeated_hour() -> None:
    got = slots("0 * * * *", "America/New_York", at("America/New_York", 2026, 11, 1, 0, 10), 3)
    assert got == ["2026-11-01 01:00 EDT", "2026-11-01 01:00 EST", "2026-11-01 02:00 EST"]


def test_utc_schedules_ignore_daylight_saving() -> None:
    got = slots("0 9 * * *", "UTC", at("UTC", 2026, 3, 28, 12), 2)
    assert got == ["2026-03-29 09:00 UTC", "2026-03-30 09:00 UTC"]


# -- syntax ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "first"),
    [
        ("0 9 * * MON-FRI", "2026-01-05 09:00 UTC"),  # 2026-01-03 is a Saturday
        ("0 0 L * *", "2026-01-31 00:00 UTC"),
        ("0 0 * * 5L", "2026-01-30 00:00 UTC"),  # last Friday
        ("0 0 * * 1#2", "2026-01-12 00:00 UTC"),  # second Monday
        ("0 12 1,15 jan,feb *", "2026-01-15 12:00 UTC"),
        ("10-20/5 3 * * *", "2026-01-04 03:10 UTC"),
        ("@daily", "2026-01-04 00:00 UTC"),
        ("@hourly", "2026-01-03 13:00 UTC"),
    ],
)
def test_common_cron_extensions(expr: str, first: str) -> None:
    assert slots(expr, "UTC", at("UTC", 2026, 1, 3, 12, 0), 1) == [first]


@pytest.mark.parametrize(
    ("expr", "zone", "needle"),
    [
        ("0 25 * * *", "UTC", "bad hour"),
        ("61 * * * *", "UTC", "bad minute"),
        ("0 9 * *", "UTC", "has 4 fields"),
        ("0 0 30 2 *", "UTC", "bad day-of-month"),
        ("0 9 * * FUNDAY", "UTC", "bad day-of-week"),
        ("", "UTC", "empty"),
        ("0 9 * * *", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("0 9 * * *", "localtime", "unknown time zone 'localtime'"),
        ("0 0 0 * * *", "UTC", "has 6 fields"),
    ],
)
def test_invalid_expressions_are_rejected_with_the_reason(
    expr: str, zone: str, needle: str
) -> None:
    with pytest.raises(CronError, match=needle):
        parse_cron(expr, zone)


def test_seconds_field_only_when_allowed() -> None:
    spec = parse_cron("*/2 * * * * *", allow_seconds=True)
    assert spec.upcoming(at("UTC", 2026, 1, 1, 0, 0, 1), 2) == [
        at("UTC", 2026, 1, 1, 0, 0, 2),
        at("UTC", 2026, 1, 1, 0, 0, 4),
    ]


def test_description_for_people() -> None:
    assert parse_cron("0 9 * * MON-FRI").describe() == "At 09:00 on Monday through Friday"


# -- properties -----------------------------------------------------------------------

EXPRESSIONS = [
    "30 2 * * *",
    "30 1 * * *",
    "0 * * * *",
    "*/15 * * * *",
    "45 0-3 * * *",
    "0 9 * * MON-FRI",
    "0 0 L * *",
    "5 2,3 * * SUN",
]
ZONES = ["UTC", "America/New_York", "Europe/London", "Australia/Sydney", "Australia/Lord_Howe"]
# spans both 2026 transitions in every zone above
INSTANTS = st.floats(
    min_value=datetime(2026, 3, 1, tzinfo=UTC).timestamp(),
    max_value=datetime(2026, 11, 15, tzinfo=UTC).timestamp(),
)


@settings(max_examples=300, deadline=None)
@given(expr=st.sampled_from(EXPRESSIONS), zone=st.sampled_from(ZONES), t=INSTANTS)
def test_next_and_latest_agree_and_leave_no_slot_between(expr: str, zone: str, t: float) -> None:
    spec = parse_cron(expr, zone)
    nxt = spec.next_after(t)
    latest = spec.latest_at_or_before(t)
    assert nxt is not None and latest is not None
    assert latest <= t < nxt
    assert spec.next_after(latest) == nxt  # nothing in between
    assert spec.latest_at_or_before(nxt) == nxt


@settings(max_examples=100, deadline=None)
@given(expr=st.sampled_from(EXPRESSIONS), zone=st.sampled_from(ZONES), t=INSTANTS)
def test_slots_strictly_increase_and_fixed_times_fire_once_a_day(
    expr: str, zone: str, t: float
) -> None:
    spec = parse_cron(expr, zone)
    upcoming = spec.upcoming(t, 40)
    assert all(a < b for a, b in itertools.pairwise(upcoming))
    if expr in ("30 2 * * *", "30 1 * * *"):
        days = [datetime.fromtimestamp(s, UTC).astimezone(ZoneInfo(zone)).date() for s in upcoming]
        assert len(days) == len(set(days))  # once per local day, DST or not
        for a, b in itertools.pairwise(days):
            assert b - a == timedelta(days=1)  # and no day is skipped
