"""Aware datetimes only: validation, UTC normalisation and the clock."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from postflow.exceptions import ConfigError, ValidationFailed

__all__ = ["Clock", "SystemClock", "parse_duration", "to_utc", "zone_name", "zone_of"]


class Clock(Protocol):
    """Something that tells the current time as an aware UTC datetime."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """Return ``datetime.now(UTC)``."""
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


def zone_name(tz: tzinfo | None, value: datetime | None = None) -> str:
    """The IANA name of ``tz`` (``"UTC"`` for UTC, ``"UTC+02:00"`` for fixed offsets).

    Zones that know their IANA name (``zoneinfo``'s ``key``, pytz's ``zone``) give it;
    others give the fixed offset they have at ``value``.
    """
    if isinstance(tz, ZoneInfo):
        return tz.key
    if tz is UTC or tz is None:
        return "UTC"
    for attribute in ("key", "zone"):
        name = getattr(tz, attribute, None)
        if isinstance(name, str) and name:
            return name
    offset = tz.utcoffset(None)
    if offset is None and value is not None:
        offset = value.utcoffset()
    if not offset:
        return "UTC"
    sign = "+" if offset >= timedelta(0) else "-"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


_OFFSET = re.compile(r"^UTC([+-])(\d\d):(\d\d)$")


_MAX_ZONE_NAME = 100
"""The longest time zone name looked up (IANA keys are far shorter)."""


def zone_of(name: str) -> tzinfo:
    """The ``tzinfo`` for a name produced by :func:`zone_name` or any IANA key."""
    if name == "UTC":
        return UTC
    match = _OFFSET.match(name)
    if match:
        sign = 1 if match.group(1) == "+" else -1
        delta = timedelta(hours=int(match.group(2)), minutes=int(match.group(3)))
        from datetime import timezone

        return timezone(sign * delta)
    if len(name) > _MAX_ZONE_NAME:
        raise ConfigError(f"unknown time zone {name[:40]!r}... ({len(name):,} characters; "
                          f"a zone name is at most {_MAX_ZONE_NAME})")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ConfigError(f"unknown time zone {name!r:.100}") from exc


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
"""The earliest instant postflow accepts (a post's times, planned days, filters)."""
LATEST = datetime(2999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
"""The latest instant postflow accepts: far enough for any plan, and far enough from
``datetime.max`` that every window postflow computes around a time (a day, a year of
slots, an event's end) stays representable."""


def out_of_range(subject: str, field: str, shown: str) -> ValidationFailed:
    """The error for a time or day outside :data:`EARLIEST` … :data:`LATEST`."""
    return ValidationFailed.single(
        subject, "out-of-range",
        f"{field} {shown} is outside the range postflow accepts "
        f"({EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d})", field=field)


def check_day(value: date, *, field: str, subject: str) -> date:
    """``value`` if it lies within :data:`EARLIEST` … :data:`LATEST` (by calendar day)."""
    if not EARLIEST.date() <= value <= LATEST.date():
        raise out_of_range(subject, field, value.isoformat())
    return value


def to_utc(value: object, *, field: str, subject: str) -> tuple[datetime, str]:
    """Check that ``value`` is an aware, existing instant; return it in UTC and its zone.

    Naive datetimes and wall-clock times that fall into a DST gap are refused with
    :class:`ValidationFailed`. In a DST fold the datetime's ``fold`` attribute picks the
    occurrence (``fold=0`` the first, as PEP 495 defines).
    """
    if not isinstance(value, datetime):
        raise ValidationFailed.single(
            subject, "not-a-datetime", f"{field} must be a datetime, got {value!r:.100}",
            field=field
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationFailed.single(
            subject,
            "naive-datetime",
            f"{field} must be timezone-aware, got naive {value.isoformat()}; "
            "attach a zone, e.g. datetime(..., tzinfo=ZoneInfo('Europe/Berlin'))",
            field=field,
        )
    if value.tzinfo is UTC:
        if not EARLIEST <= value <= LATEST:
            raise out_of_range(subject, field, value.isoformat())
        return value, "UTC"
    try:
        utc = value.astimezone(UTC)
        back = utc.astimezone(value.tzinfo)
    except OverflowError as exc:
        raise out_of_range(subject, field, value.isoformat()) from exc
    if not EARLIEST <= utc <= LATEST:
        raise out_of_range(subject, field, value.isoformat())
    if back.replace(tzinfo=None, fold=0) != value.replace(tzinfo=None, fold=0):
        raise ValidationFailed.single(
            subject,
            "nonexistent-local-time",
            f"{field} {value.replace(tzinfo=None).isoformat()} does not exist in "
            f"{zone_name(value.tzinfo)} (the clocks skip it for daylight saving time)",
            field=field,
        )
    return utc, zone_name(value.tzinfo, value)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object, *, what: str) -> timedelta:
    """Parse ``"24h"``, ``"90m"``, ``"2d"``, a number of seconds or a ``timedelta``."""
    try:
        if isinstance(value, timedelta):
            result = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            result = timedelta(seconds=value)
        elif isinstance(value, str) and (match := _DURATION.match(value)):
            result = timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
        else:
            raise ValueError(value)
    except (ValueError, OverflowError) as exc:
        raise ConfigError(
            f"{what}: {value!r:.100} is not a duration (use e.g. '24h', '90m', '2d')"
        ) from exc
    if result <= timedelta(0):
        raise ConfigError(f"{what}: duration must be positive, got {value!r:.100}")
    return result
