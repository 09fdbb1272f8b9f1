"""Temporal queries (GS CIM 009 clause 4.11, 6.18-6.24): time filters, durations, aggregation.

Times inside the temporal domain are integers: microseconds since 1970-01-01 UTC, so
stores compare and bucket them with integer arithmetic. :func:`to_micros` and
:func:`from_micros` convert to and from the stored ISO 8601 form of ``ngsild.model``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from urbanstack.ngsild.errors import BadRequestData
from urbanstack.ngsild.model import normalize_datetime

TIMERELS = ("before", "after", "between")
TIME_PROPERTIES = ("observedAt", "createdAt", "modifiedAt")
AGGREGATION_METHODS = (
    "totalCount",
    "distinctCount",
    "sum",
    "avg",
    "min",
    "max",
    "stddev",
    "sumsq",
)
#: methods that only mean something for numbers (and booleans, counted as 0/1)
NUMERIC_METHODS = frozenset({"sum", "avg", "stddev", "sumsq"})
MICROS_PER_SECOND = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = _EPOCH.toordinal()
_DURATION_RE = re.compile(
    r"^P(?!$)(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


@lru_cache(maxsize=8192)
def to_micros(stamp: str) -> int:
    """Microseconds since the epoch of a stored timestamp (``...Z``, as normalised)."""
    dt = datetime.fromisoformat(stamp[:-1] if stamp.endswith("Z") else stamp)
    days = dt.toordinal() - _EPOCH_ORDINAL
    seconds = days * 86400 + dt.hour * 3600 + dt.minute * 60 + dt.second
    micros = seconds * MICROS_PER_SECOND + dt.microsecond
    offset = dt.utcoffset()
    if offset:
        micros -= offset // timedelta(microseconds=1)
    return micros


# zero-padded digits by look-up: answers format thousands of times per request
_TWO_DIGITS = [f"{i:02d}" for i in range(100)]
_THREE_DIGITS = [f"{i:03d}" for i in range(1000)]


def from_micros(micros: int) -> str:
    """The public NGSI-LD form (UTC, milliseconds) of a time in microseconds."""
    seconds, fraction = divmod(micros, MICROS_PER_SECOND)
    days, seconds = divmod(seconds, 86400)
    two = _TWO_DIGITS
    return (
        f"{_day(days)}T{two[seconds // 3600]}:{two[seconds // 60 % 60]}:{two[seconds % 60]}"
        f".{_THREE_DIGITS[fraction // 1000]}Z"
    )


@lru_cache(maxsize=4096)
def _day(days: int) -> str:
    """``YYYY-MM-DD`` of a day number since the epoch (cached: answers span few days)."""
    return datetime.fromordinal(_EPOCH_ORDINAL + days).strftime("%Y-%m-%d")


def parse_time(value: object, what: str) -> int:
    """A client datetime (ISO 8601 with a time part) in microseconds; BadRequestData if not."""
    return to_micros(normalize_datetime(value, what))


@dataclass(frozen=True)
class Duration:
    """An ISO 8601 duration split into calendar months and a fixed number of microseconds."""

    months: int = 0
    micros: int = 0
    text: str = ""

    @property
    def is_zero(self) -> bool:
        return self.months == 0 and self.micros == 0

    def add_to(self, micros: int) -> int:
        """``micros`` moved forward by this duration (months follow the calendar)."""
        if self.months:
            dt = _EPOCH + timedelta(microseconds=micros)
            month_index = dt.year * 12 + dt.month - 1 + self.months
            year, month = divmod(month_index, 12)
            day = min(dt.day, _days_in_month(year, month + 1))
            dt = dt.replace(year=year, month=month + 1, day=day)
            micros = (dt - _EPOCH) // timedelta(microseconds=1)
        return micros + self.micros


def _days_in_month(year: int, month: int) -> int:
    if month == 12:
        return 31
    return (datetime(year, month + 1, 1) - datetime(year, month, 1)).days


def parse_duration(text: object, what: str = "aggrPeriodDuration") -> Duration:
    """An ISO 8601 duration such as ``PT1H``, ``P1D``, ``P1M`` or ``P1Y2M10DT2H30M``."""
    match = _DURATION_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise BadRequestData(f"Invalid {what}: {text!r} is not an ISO 8601 duration (e.g. PT1H)")
    parts = {k: v for k, v in match.groupdict().items() if v is not None}
    months = int(parts.get("years", 0)) * 12 + int(parts.get("months", 0))
    days = int(parts.get("weeks", 0)) * 7 + int(parts.get("days", 0))
    seconds = days * 86400 + int(parts.get("hours", 0)) * 3600 + int(parts.get("minutes", 0)) * 60
    micros = seconds * MICROS_PER_SECOND + round(float(parts.get("seconds", 0)) * MICROS_PER_SECOND)
    return Duration(months, micros, text)  # type: ignore[arg-type]


@dataclass(frozen=True)
class TimeFilter:
    """``timerel`` with its instants: before ``at``, at or after ``at``, or in ``[at, end)``."""

    timerel: str
    at: int
    end: int | None = None

    def bounds(self) -> tuple[int | None, int | None]:
        """(inclusive lower, exclusive upper) bound of the instants kept."""
        if self.timerel == "before":
            return None, self.at
        if self.timerel == "after":
            return self.at, None
        return self.at, self.end


@dataclass(frozen=True)
class Aggregation:
    """``aggrMethods`` and ``aggrPeriodDuration`` (None: one period over the whole range)."""

    methods: tuple[str, ...]
    period: Duration | None = None


@dataclass(frozen=True)
class TemporalQuery:
    """What to return of entities' histories: which instants, how many, how shaped."""

    time: TimeFilter | None = None
    timeproperty: str = "observedAt"
    last_n: int | None = None
    attrs: frozenset[str] | None = None  # expanded attribute IRIs
    aggregation: Aggregation | None = None
    instance_limit: int = 1000  # instances per attribute in one answer (then 206)
    sys_attrs: bool = False

    @property
    def descending(self) -> bool:
        """lastN and ``before`` queries take the most recent instances first."""
        return self.last_n is not None or (self.time is not None and self.time.timerel == "before")


def parse_time_filter(
    timerel: str | None, time_at: str | None, end_time_at: str | None, *, required: bool
) -> TimeFilter | None:
    """Validate ``timerel``, ``timeAt`` and ``endTimeAt`` (clause 4.11); None when absent
    and not ``required``."""
    if timerel is None:
        if required:
            raise BadRequestData("timerel is required (before, after or between)")
        if time_at is not None or end_time_at is not None:
            raise BadRequestData("timeAt and endTimeAt need a timerel")
        return None
    if timerel not in TIMERELS:
        raise BadRequestData(f"Invalid timerel {timerel!r}: use before, after or between")
    if time_at is None:
        raise BadRequestData(f"timerel={timerel} needs a timeAt")
    at = parse_time(time_at, "timeAt")
    if timerel == "between":
        if end_time_at is None:
            raise BadRequestData("timerel=between needs an endTimeAt")
        end = parse_time(end_time_at, "endTimeAt")
        if end <= at:
            raise BadRequestData("endTimeAt must be later than timeAt")
        return TimeFilter(timerel, at, end)
    if end_time_at is not None:
        raise BadRequestData(f"endTimeAt is only allowed with timerel=between, not {timerel}")
    return TimeFilter(timerel, at)


def parse_timeproperty(value: str | None) -> str:
    """``timeproperty``: observedAt (default), createdAt or modifiedAt."""
    if value is None:
        return "observedAt"
    if value not in TIME_PROPERTIES:
        raise BadRequestData(
            f"Invalid timeproperty {value!r}: use observedAt, createdAt or modifiedAt"
        )
    return value


def parse_last_n(value: object) -> int | None:
    """``lastN``: a positive integer, or None."""
    if value is None:
        return None
    text = str(value)
    if not text.isdigit() or int(text) < 1:
        raise BadRequestData(f"Invalid lastN {value!r}: a positive integer is expected")
    return int(text)


def parse_aggregation(methods: object, period: object, *, wanted: bool) -> Aggregation | None:
    """``aggrMethods`` (comma list or list) and ``aggrPeriodDuration`` for aggregatedValues."""
    if not wanted:
        if methods is not None or period is not None:
            raise BadRequestData("aggrMethods and aggrPeriodDuration need options=aggregatedValues")
        return None
    if methods is None:
        raise BadRequestData("options=aggregatedValues needs aggrMethods")
    names = methods if isinstance(methods, list) else str(methods).split(",")
    chosen: list[str] = []
    for name in names:
        name = name.strip() if isinstance(name, str) else name
        if name not in AGGREGATION_METHODS:
            raise BadRequestData(
                f"Unknown aggregation method {name!r}: use {', '.join(AGGREGATION_METHODS)}"
            )
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise BadRequestData("aggrMethods names no method")
    duration = None if period is None else parse_duration(period)
    return Aggregation(tuple(chosen), None if duration is None or duration.is_zero else duration)


def bucket_starts(origin: int, end: int, period: Duration) -> list[int]:
    """Start instants of the periods from ``origin`` covering up to ``end`` (exclusive)."""
    starts = [origin]
    while True:
        following = period.add_to(starts[-1])
        if following >= end:
            return starts
        starts.append(following)


class FixedPeriods:
    """Period ``i`` of a fixed-length bucketing, as ``periods[i]`` (start, end)."""

    def __init__(self, origin: int, step: int) -> None:
        self.origin, self.step = origin, step

    def __getitem__(self, index: int) -> tuple[int, int]:
        return self.origin + index * self.step, self.origin + (index + 1) * self.step


def period_bounds(
    periods: FixedPeriods | Sequence[tuple[int, int]], indexes: Iterable[int]
) -> tuple[list[int], list[int]]:
    """Starts and ends of the periods numbered ``indexes`` (fixed periods, or a list of
    (start, end) pairs)."""
    if isinstance(periods, FixedPeriods):
        origin, step = periods.origin, periods.step
        starts = [origin + i * step for i in indexes]
        return starts, [start + step for start in starts]
    bounds = [periods[i] for i in indexes]
    return [lo for lo, _ in bounds], [hi for _, hi in bounds]
