"""Fiscal quarters: the year starts on the 1st of a configurable month and is named by the year it ends."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TypeVar

from django.conf import settings
from django.utils import timezone

_CODE = re.compile(r"^Q([1-4])(\d{2})$")


def _start_month(start_month: int | None) -> int:
    return settings.PSPLAN_FISCAL_YEAR_START_MONTH if start_month is None else start_month


@dataclass(frozen=True, order=True)
class FiscalQuarter:
    """A fiscal quarter such as Q3 of FY2023, written `Q323` in `close_qtr` labels."""

    year: int
    quarter: int

    @classmethod
    def of(cls, day: date, *, start_month: int | None = None) -> FiscalQuarter:
        """The fiscal quarter that contains `day`."""
        start = _start_month(start_month)
        months_into_year = (day.month - start) % 12
        year = day.year + 1 if start > 1 and day.month >= start else day.year
        return cls(year=year, quarter=months_into_year // 3 + 1)

    @classmethod
    def parse(cls, code: str) -> FiscalQuarter:
        """`Q323` -> Q3 of FY2023; raises ValueError for anything else."""
        match = _CODE.match(code.strip().upper())
        if not match:
            raise ValueError(f"{code!r} is not a fiscal quarter like Q323")
        return cls(year=2000 + int(match.group(2)), quarter=int(match.group(1)))

    @property
    def code(self) -> str:
        return f"Q{self.quarter}{self.year % 100:02d}"

    def __str__(self) -> str:
        return self.code

    def first_day(self, *, start_month: int | None = None) -> date:
        start = _start_month(start_month)
        month_index = start - 1 + (self.quarter - 1) * 3
        first_year = self.year - 1 if start > 1 else self.year
        return date(first_year + month_index // 12, month_index % 12 + 1, 1)

    def last_day(self, *, start_month: int | None = None) -> date:
        return self.next().first_day(start_month=start_month) - timedelta(days=1)

    def next(self) -> FiscalQuarter:
        if self.quarter == 4:
            return FiscalQuarter(year=self.year + 1, quarter=1)
        return FiscalQuarter(year=self.year, quarter=self.quarter + 1)

    def previous(self) -> FiscalQuarter:
        if self.quarter == 1:
            return FiscalQuarter(year=self.year - 1, quarter=4)
        return FiscalQuarter(year=self.year, quarter=self.quarter - 1)

    def shifted(self, quarters: int) -> FiscalQuarter:
        """The quarter `quarters` later (earlier when negative): Q425 shifted by 1 is Q126."""
        index = self.year * 4 + self.quarter - 1 + quarters
        return FiscalQuarter(year=index // 4, quarter=index % 4 + 1)

    def ending_series(self, count: int) -> list[FiscalQuarter]:
        """`count` consecutive quarters, oldest first, ending with this one."""
        return [self.shifted(offset) for offset in range(1 - count, 1)]

    def starts_at(self, *, start_month: int | None = None) -> datetime:
        """Midnight of the first day, in the site's time zone: where history "at the start" is read."""
        return timezone.make_aware(datetime.combine(self.first_day(start_month=start_month), time.min))

    def ends_at(self, *, start_month: int | None = None) -> datetime:
        """Midnight after the last day: the exclusive end of the quarter."""
        return self.next().starts_at(start_month=start_month)

    @classmethod
    def current(cls, *, start_month: int | None = None) -> FiscalQuarter:
        """The fiscal quarter of today, in the site's time zone."""
        return cls.of(timezone.localdate(), start_month=start_month)


def quarter_code(day: date | None) -> str:
    """The `Q323` code of the fiscal quarter containing `day`, or "" for no day."""
    return FiscalQuarter.of(day).code if day else ""


def quarter_sort_key(code: str) -> tuple[int, int]:
    """Chronological order for quarter codes; unparseable codes sort last."""
    try:
        quarter = FiscalQuarter.parse(code)
    except ValueError:
        return (9999, 9)
    return (quarter.year, quarter.quarter)


_When = TypeVar("_When", date, datetime)


def add_months(when: _When, months: int) -> _When:
    """Calendar-month arithmetic: Dec 31 + 2 months is the last day of February."""
    month_index = when.month - 1 + months
    year, month = when.year + month_index // 12, month_index % 12 + 1
    return when.replace(year=year, month=month, day=min(when.day, calendar.monthrange(year, month)[1]))
