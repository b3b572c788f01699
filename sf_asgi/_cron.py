"""The platform's timer schedules: six-field cron expressions, in UTC, to the minute (pure).

`Minutes Hours Day-of-month Month Day-of-week [Year]`, the Quartz-style syntax the platform
documents (en/_includes/functions/cron-expression.md): `*`, `,`, `-`, `/`; `?` in one of the two
day fields; month and day names (`JAN`, `MON`, any case); days of the week 1-7 from Sunday;
`L` (last day of the month, or `5L`: its last Thursday), `W` (`15W`: the weekday nearest the
15th; `LW`) and `#` (`6#3`: the third Friday). No well-kept Python library parses this dialect
(croniter counts days of the week from 0 and reads a sixth field as seconds), hence this module.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime

_MONTHS = {name.upper(): number for number, name in enumerate(calendar.month_abbr) if name}
_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_FIELDS = ("minutes", "hours", "day of month", "month", "day of week", "year")
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (1, 7), (1970, 2099))


class CronError(ValueError):
    """A schedule the platform would refuse; the message names the field and the fix."""


@dataclasses.dataclass(frozen=True)
class Schedule:
    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    months: frozenset[int]
    years: frozenset[int] | None  # None: every year
    days: frozenset[int] | None  # days of the month, or None when the field is `?`
    last_day: bool  # L
    nearest_weekday: int | None  # 15W; 0 for LW
    weekdays: frozenset[int] | None  # 1 = Sunday; None when the field is `?`
    last_weekday: int | None  # 5L
    nth_weekday: tuple[int, int] | None  # 6#3 -> (6, 3)

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """The schedule of a cron expression; CronError naming the field and the fix."""
        try:
            return cls._parse(text)
        except CronError as exc:
            message = str(exc)
            raise CronError(message if message.startswith("cron ") else f"cron {text!r}: {message}") from None

    @classmethod
    def _parse(cls, text: str) -> Schedule:
        fields = text.split()
        if len(fields) not in (5, 6):
            raise CronError(
                f"cron {text!r} has {len(fields)} fields; the platform's has 6: "
                "minutes hours day-of-month month day-of-week year, e.g. '*/5 * ? * * *'"
            )
        minute, hour, dom, month, dow = fields[:5]
        year = fields[5] if len(fields) == 6 else "*"
        if (dom == "?") == (dow == "?"):
            raise CronError(
                f"cron {text!r}: put ? in exactly one of day-of-month and day-of-week, e.g. '0 9 ? * MON-FRI *'"
            )
        days: frozenset[int] | None = None
        last_day, nearest = False, None
        if dom != "?":
            upper = dom.upper()
            if upper in ("L", "LW"):
                last_day, nearest = upper == "L", (0 if upper == "LW" else None)
            elif upper.endswith("W") and upper[:-1].isdigit():
                nearest = _number(upper[:-1], 2)
                if not 1 <= nearest <= 31:
                    raise CronError(f"cron {text!r}: day of month {nearest} is not 1-31")
            else:
                days = _values(dom, 2)
        weekdays: frozenset[int] | None = None
        last_weekday, nth = None, None
        if dow != "?":
            upper = dow.upper()
            if upper == "L":
                weekdays = frozenset({7})  # the last day of the week: Saturday
            elif upper.endswith("L"):
                last_weekday = _single(upper[:-1], 4)
            elif "#" in upper:
                day, _, which = upper.partition("#")
                nth = (_single(day, 4), _number(which, 4))
                if not 1 <= nth[1] <= 5:
                    raise CronError(f"cron {text!r}: in {dow!r} the week must be 1-5")
            else:
                weekdays = _values(dow, 4)
        return cls(
            text,
            _values(minute, 0),
            _values(hour, 1),
            _values(month, 3),
            None if year == "*" else _values(year, 5),
            days,
            last_day,
            nearest,
            weekdays,
            last_weekday,
            nth,
        )

    def matches_day(self, day: datetime.date) -> bool:
        if day.month not in self.months or (self.years is not None and day.year not in self.years):
            return False
        last = calendar.monthrange(day.year, day.month)[1]
        weekday = day.isoweekday() % 7 + 1  # 1 = Sunday, as the platform counts
        if self.days is not None:
            return day.day in self.days
        if self.last_day:
            return day.day == last
        if self.nearest_weekday is not None:
            return day == _nearest_weekday(day.year, day.month, self.nearest_weekday or last)
        if self.weekdays is not None:
            return weekday in self.weekdays
        if self.last_weekday is not None:
            return weekday == self.last_weekday and day.day + 7 > last
        assert self.nth_weekday is not None
        return weekday == self.nth_weekday[0] and (day.day - 1) // 7 + 1 == self.nth_weekday[1]

    def next_after(self, moment: datetime.datetime) -> datetime.datetime | None:
        """The first firing strictly after `moment` (UTC), or None if there is none before 2100."""
        start = moment.astimezone(datetime.UTC).replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
        day = start.date()
        while day.year < 2100:
            if self.matches_day(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = datetime.datetime(day.year, day.month, day.day, hour, minute, tzinfo=datetime.UTC)
                        if candidate >= start:
                            return candidate
            day += datetime.timedelta(days=1)
        return None


def _nearest_weekday(year: int, month: int, target: int) -> datetime.date:
    """The weekday nearest the target day, within the same month (Quartz's W)."""
    last = calendar.monthrange(year, month)[1]
    day = datetime.date(year, month, min(target, last))
    if day.weekday() == 5:  # Saturday: the Friday before, unless that leaves the month
        return day - datetime.timedelta(days=1) if day.day > 1 else day + datetime.timedelta(days=2)
    if day.weekday() == 6:  # Sunday: the Monday after, unless that leaves the month
        return day + datetime.timedelta(days=1) if day.day < last else day - datetime.timedelta(days=2)
    return day


def _number(text: str, field: int) -> int:
    names = _MONTHS if field == 3 else _DAYS if field == 4 else {}
    upper = text.upper()
    if upper in names:
        return names[upper]
    if not text.isdigit():
        raise CronError(f"{_FIELDS[field]}: {text!r} is not a number{' or a name' if names else ''}")
    return int(text)


def _single(text: str, field: int) -> int:
    value = _number(text, field)
    low, high = _RANGES[field]
    if not low <= value <= high:
        raise CronError(f"{_FIELDS[field]}: {value} is outside {low}-{high}")
    return value


def _values(text: str, field: int) -> frozenset[int]:
    """A field of `*`, lists, ranges and steps as the set of values it selects."""
    low, high = _RANGES[field]
    out: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            step = _number(step_text, 0)
            if step < 1:
                raise CronError(f"{_FIELDS[field]}: the step in {part!r} must be 1 or more")
        if base in ("*", ""):
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _single(first, field), _single(last, field)
            if start > end:
                raise CronError(f"{_FIELDS[field]}: the range {base!r} runs backwards")
        else:
            start = _single(base, field)
            end = high if step_text else start  # 0/15: from 0 on, every 15
        out.update(range(start, end + 1, step))
    if not out:
        raise CronError(f"{_FIELDS[field]}: {text!r} selects nothing")
    return frozenset(out)


def parse_timers(text: str) -> list[tuple[Schedule, str]]:
    """`CRON[=PAYLOAD]` entries, one a line, as (schedule, payload); CronError naming the fix."""
    timers = []
    for line in text.splitlines():
        if not line.strip():
            continue
        cron, _, payload = line.partition("=")
        try:
            timers.append((Schedule.parse(cron.strip()), payload))
        except CronError as exc:
            raise CronError(f"SF_TIMER: {exc}") from None
    return timers
