"""Time zone rules for scheduling: wall-clock times in IANA zones and UTC instants.

Every datetime returned here is timezone-aware UTC (``datetime.timezone.utc``)
unless the function's purpose is to show an instant in another zone
(``in_zone``). Naive datetimes are rejected with ``ValueError``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "UTC",
    "UnknownTimeZone",
    "zone",
    "is_valid_zone",
    "require_aware",
    "to_utc",
    "local_to_utc",
    "local_date_range_to_utc",
    "in_zone",
    "SUPPORTED_YEARS",
    "in_supported_range",
]

UTC = UTC


# The calendar the service works in: dates and instants outside it are refused at the door
# (year 9999 plus a day, or year 1 minus an offset, would overflow Python's datetime).
SUPPORTED_YEARS = range(1900, 2201)


def in_supported_range(value: date) -> bool:
    """Tell whether a date (or a datetime, by its own wall-clock date) falls in
    ``SUPPORTED_YEARS`` (1900 to 2200)."""
    return value.year in SUPPORTED_YEARS


class UnknownTimeZone(ValueError):
    """The name is not an IANA time zone known to this system."""


def zone(name: str) -> ZoneInfo:
    """Return the IANA zone called ``name``; raise UnknownTimeZone if there is none."""
    if not isinstance(name, str) or not name:
        raise UnknownTimeZone(f"unknown time zone: {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        # ValueError: malformed keys such as '../x' or '/etc/passwd';
        # OSError: keys naming a directory of the database, e.g. 'America'.
        raise UnknownTimeZone(f"unknown time zone: {name!r}") from exc


def is_valid_zone(name: str) -> bool:
    """Tell whether ``name`` is a known IANA time zone."""
    try:
        zone(name)
    except UnknownTimeZone:
        return False
    return True


def require_aware(dt: datetime, what: str = "datetime") -> datetime:
    """Return ``dt`` unchanged if it is timezone-aware; raise ValueError otherwise."""
    if not isinstance(dt, datetime):
        raise ValueError(f"{what} must be a datetime, got {type(dt).__name__}")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {dt.isoformat()}")
    return dt


def to_utc(dt: datetime) -> datetime:
    """Convert an aware datetime to UTC (naive datetimes raise ValueError)."""
    return require_aware(dt).astimezone(UTC)


def local_to_utc(day: date, at: time, zone_name: str) -> datetime:
    """Turn the wall-clock time ``at`` on ``day`` in ``zone_name`` into a UTC instant.

    Daylight-saving rules:

    * Ambiguous times (the repeated hour when clocks fall back) take the
      first occurrence, i.e. the offset in force before the change (fold=0).
      01:30 on 2026-11-01 in America/Denver is 01:30 MDT = 07:30Z.
    * Non-existent times (the skipped hour when clocks spring forward) are
      moved forward by the length of the gap. 02:30 on 2026-03-08 in
      America/Denver does not exist and becomes 03:30 MDT = 09:30Z.

    ``at`` must be a naive wall-clock time; ``day`` must be a plain date.
    """
    if isinstance(day, datetime) or not isinstance(day, date):
        raise ValueError(f"day must be a date, got {type(day).__name__}")
    if not isinstance(at, time):
        raise ValueError(f"at must be a time, got {type(at).__name__}")
    if at.tzinfo is not None:
        raise ValueError("at must be a wall-clock time without tzinfo")
    wall = datetime.combine(day, at.replace(fold=0)).replace(tzinfo=zone(zone_name))
    # With fold=0 zoneinfo applies the offset in force before a transition.
    # For the fall-back overlap that is the first occurrence; for a
    # spring-forward gap that is the old (smaller) offset, which lands exactly
    # "gap length" later on the new offset - the documented behaviour.
    return wall.astimezone(UTC)


def local_date_range_to_utc(
    start: date, end_inclusive: date, zone_name: str
) -> tuple[datetime, datetime]:
    """Return the UTC instants [start 00:00 local, (end_inclusive + 1 day) 00:00 local)."""
    if end_inclusive < start:
        raise ValueError(f"end {end_inclusive} is before start {start}")
    midnight = time(0, 0)
    return (
        local_to_utc(start, midnight, zone_name),
        local_to_utc(end_inclusive + timedelta(days=1), midnight, zone_name),
    )


def in_zone(dt: datetime, zone_name: str) -> datetime:
    """Show the aware instant ``dt`` as wall-clock time in ``zone_name`` (same instant).

    Compare results with ``to_utc`` or ``timestamp()``, not ``==`` against other
    zones: under PEP 495 an ambiguous local time never compares equal across zones.
    """
    return require_aware(dt).astimezone(zone(zone_name))
