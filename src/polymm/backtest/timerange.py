"""UTC time range from the command line: dates, date + hour, or free timestamps."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from polymm.backtest.errors import BacktestInputError

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HOUR = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}$")


def parse_time(text: str, *, end: bool = False, option: str = "--start") -> int:
    """Unix ns. A date or date+hour given as an end covers that whole day or hour."""
    value = text.strip()
    try:
        if _DATE.match(value):
            t = datetime.fromisoformat(value).replace(tzinfo=UTC)
            return _ns(t + timedelta(days=1) if end else t)
        if _HOUR.match(value):
            t = datetime.fromisoformat(value.replace(" ", "T") + ":00").replace(tzinfo=UTC)
            return _ns(t + timedelta(hours=1) if end else t)
        if re.fullmatch(r"\d+(\.\d+)?", value):
            seconds = float(value)
            if not 1e9 <= seconds <= 1e10:
                raise ValueError("unix seconds expected")
            return round(seconds * 1e9)
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        return _ns(t)
    except ValueError:
        raise BacktestInputError(
            f"{option} {text!r}: use YYYY-MM-DD, YYYY-MM-DDTHH, an ISO-8601 time (UTC) or unix seconds"
        ) from None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ns(t: datetime) -> int:
    d = t - _EPOCH  # exact integer arithmetic, no float rounding of the microseconds
    return (d.days * 86_400 + d.seconds) * 1_000_000_000 + d.microseconds * 1000


def fmt_ns(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"
