"""The platform's cron syntax for timers, apart from the firing loop."""

from __future__ import annotations

import datetime

import pytest

from sf_asgi._cron import CronError, Schedule, parse_timers

UTC = datetime.UTC
# Wednesday 2 December 2026, 06:03:30 UTC.
NOW = datetime.datetime(2026, 12, 2, 6, 3, 30, tzinfo=UTC)


def at(*parts: int) -> datetime.datetime:
    return datetime.datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        # The documented examples.
        ("* * * * ? *", at(2026, 12, 2, 6, 4)),  # every minute
        ("0 * ? * * *", at(2026, 12, 2, 7, 0)),  # every hour
        ("15 10 ? * * *", at(2026, 12, 2, 10, 15)),  # every day at 10:15
        ("0/15 * ? * * *", at(2026, 12, 2, 6, 15)),  # 0, 15, 30 and 45 past each hour
        ("0 10-12 ? * * *", at(2026, 12, 2, 10, 0)),
        ("0 0 ? * MON,WED,FRI *", at(2026, 12, 4, 0, 0)),  # names, any case: Friday next
        ("0 0 ? * mon-tue *", at(2026, 12, 7, 0, 0)),
        ("0 0 10 * ? *", at(2026, 12, 10, 0, 0)),  # the 10th of each month
        ("0 0 L * ? *", at(2026, 12, 31, 0, 0)),  # the last day of the month
        ("0 0 15W * ? *", at(2026, 12, 15, 0, 0)),  # the weekday nearest the 15th (a Tuesday)
        ("0 0 5W * ? *", at(2026, 12, 4, 0, 0)),  # the 5th is a Saturday: Friday the 4th
        ("0 0 LW * ? *", at(2026, 12, 31, 0, 0)),  # the last weekday
        ("0 0 ? * 6#3 *", at(2026, 12, 18, 0, 0)),  # the third Friday
        ("0 0 ? * 5L *", at(2026, 12, 31, 0, 0)),  # the last Thursday
        ("0 0 ? * L *", at(2026, 12, 5, 0, 0)),  # L in day of week: Saturday
        ("0 0 ? * 1 *", at(2026, 12, 6, 0, 0)),  # 1 is Sunday
        ("0 12 1 JAN ? 2027", at(2027, 1, 1, 12, 0)),
        ("0 12 29 2 ? *", at(2028, 2, 29, 12, 0)),  # the next leap day
        ("30 6 * * ?", at(2026, 12, 2, 6, 30)),  # the year may be left out
    ],
)
def test_next_firing(cron: str, expected: datetime.datetime) -> None:
    assert Schedule.parse(cron).next_after(NOW) == expected


def test_a_schedule_that_never_fires_again() -> None:
    assert Schedule.parse("0 0 1 1 ? 2020").next_after(NOW) is None


def test_a_firing_time_is_strictly_after() -> None:
    schedule = Schedule.parse("* * * * ? *")
    assert schedule.next_after(at(2026, 12, 2, 6, 4)) == at(2026, 12, 2, 6, 5)


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("* * * *", "has 4 fields; the platform's has 6"),
        ("* * * * * *", "put ? in exactly one of day-of-month and day-of-week"),
        ("* * ? * ? *", "put ? in exactly one"),
        ("61 * ? * * *", "minutes: 61 is outside 0-59"),
        ("* 24 ? * * *", "hours: 24 is outside 0-23"),
        ("* * ? * FOO *", "day of week: 'FOO' is not a number or a name"),
        ("* * ? 13 * *", "month: 13 is outside 1-12"),
        ("*/0 * ? * * *", "the step in '*/0' must be 1 or more"),
        ("5-1 * ? * * *", "the range '5-1' runs backwards"),
        ("* * ? * 6#9 *", "the week must be 1-5"),
        ("* * ? * * 1800", "year: 1800 is outside 1970-2099"),
    ],
)
def test_malformed_expressions_name_the_field_and_fix(cron: str, message: str) -> None:
    with pytest.raises(CronError, match=r"^cron ") as info:
        Schedule.parse(cron)
    assert message in str(info.value)


def test_timers_with_payloads() -> None:
    timers = parse_timers("*/5 * ? * * *=ping\n\n0 9 ? * MON-FRI *=a=b\n0 0 ? * * *")
    assert [(s.text, p) for s, p in timers] == [
        ("*/5 * ? * * *", "ping"),
        ("0 9 ? * MON-FRI *", "a=b"),
        ("0 0 ? * * *", ""),
    ]
    with pytest.raises(CronError, match="SF_TIMER: cron 'soon'"):
        parse_timers("soon=x")
