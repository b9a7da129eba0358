"""Reading XML Schema values leniently: harmless forms (case, whitespace, zones) pass.

Each reader returns ``None`` for a value it cannot read, so a check reports one clear
violation instead of raising.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

_INTEGER = re.compile(r"[+-]?[0-9]+")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})*")
_DATETIME = re.compile(
    r"(-?\d{4,})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})?"
)


def parse_int(text: str | None) -> int | None:
    """An ``xsd:integer``: optional sign, decimal digits, surrounding whitespace allowed."""
    if text is None:
        return None
    value = text.strip()
    return int(value) if _INTEGER.fullmatch(value) else None


def hex_octets(text: str | None) -> bytes | None:
    """An ``xsd:hexBinary`` in either case; whitespace inside is tolerated (pretty printers)."""
    if text is None:
        return None
    compact = "".join(text.split())
    if not _HEX.fullmatch(compact):
        return None
    return bytes.fromhex(compact)


def parse_boolean(text: str | None) -> bool | None:
    value = None if text is None else text.strip()
    return {"true": True, "1": True, "false": False, "0": False}.get(value or "")


def parse_datetime(text: str | None) -> datetime | None:
    """An ``xsd:dateTime`` as an aware UTC datetime; no zone means UTC (kms-interface 13)."""
    if text is None:
        return None
    match = _DATETIME.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7), match.group(8)
    micro = round(float(fraction) * 1_000_000) if fraction else 0
    try:
        # 24:00:00 is a valid xsd:dateTime meaning the end of that day.
        extra = timedelta(0)
        if hour == 24 and minute == 0 and second == 0 and not micro:
            hour, extra = 0, timedelta(days=1)
        value = datetime(year, month, day, hour, minute, second, min(micro, 999_999)) + extra
    except ValueError:
        return None
    if zone in (None, "Z"):
        tz: timezone = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 14 or minutes > 59:
            return None
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    return value.replace(tzinfo=tz).astimezone(UTC)
