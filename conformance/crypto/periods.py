"""Key periods on the NTP timescale and the keyprov time segment (kms-interface.md section 13).

Key period k covers NTP seconds [k*P + O, (k+1)*P + O), where P is ``UserKeyPeriod`` and
O is ``UserKeyOffset``. NTP seconds count from 1900-01-01T00:00:00Z; only NTP era 0
(up to 2036-02-07T06:28:15Z) fits the 32-bit seconds field of the time segment.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from conformance.crypto.errors import InvalidEncoding

NTP_UNIX_OFFSET = 2208988800
NTP_EPOCH = datetime(1900, 1, 1, tzinfo=UTC)

_SECONDS_FIELD = 1 << 32
_TIME_SEGMENT = re.compile(r"[0-9A-Fa-f]{16}")


def ntp_seconds(instant: datetime) -> int:
    """Whole NTP seconds of ``instant`` (floor); a naive datetime is taken as UTC."""
    seconds, _ = _ntp_seconds_and_microseconds(instant)
    return seconds


def datetime_from_ntp(seconds: int) -> datetime:
    """The UTC-aware instant of ``seconds`` on the NTP timescale."""
    _require_int(seconds, "NTP seconds")
    try:
        return NTP_EPOCH + timedelta(seconds=seconds)
    except OverflowError as exc:
        raise InvalidEncoding(f"NTP seconds {seconds} are outside the datetime range") from exc


def key_period_no(instant: datetime | int, period: int, offset: int) -> int:
    """KeyPeriodNo = floor((NTP seconds - offset) / period); an int instant is NTP seconds."""
    _require_period(period, offset)
    if isinstance(instant, datetime):
        seconds = ntp_seconds(instant)
    else:
        _require_int(instant, "NTP seconds")
        seconds = instant
    return (seconds - offset) // period


def period_start(period_no: int, period: int, offset: int) -> datetime:
    """First instant of key period ``period_no``."""
    _require_period(period, offset)
    _require_int(period_no, "key period number")
    return datetime_from_ntp(period_no * period + offset)


def period_end(period_no: int, period: int, offset: int) -> datetime:
    """Exclusive end of key period ``period_no``: the start of the next period."""
    _require_int(period_no, "key period number")
    return period_start(period_no + 1, period, offset)


def encode_ntp_time(instant: datetime | int) -> str:
    """The keyprov time segment: 64-bit NTP timestamp as 16 uppercase hex digits.

    A datetime's microseconds become the 32-bit fraction; an int is whole NTP seconds.
    """
    if isinstance(instant, datetime):
        seconds, microseconds = _ntp_seconds_and_microseconds(instant)
        fraction = microseconds * _SECONDS_FIELD // 1_000_000
    else:
        _require_int(instant, "NTP seconds")
        seconds, fraction = instant, 0
    if not 0 <= seconds < _SECONDS_FIELD:
        raise InvalidEncoding(f"NTP seconds {seconds} do not fit the 32-bit field of NTP era 0")
    return f"{seconds:08X}{fraction:08X}"


def decode_ntp_time(segment: str) -> int:
    """Whole NTP seconds of a keyprov time segment; the fraction is ignored."""
    if not isinstance(segment, str) or not _TIME_SEGMENT.fullmatch(segment):
        raise InvalidEncoding(f"a keyprov time segment is exactly 16 hex digits, got {segment!r}")
    return int(segment[:8], 16)


def _ntp_seconds_and_microseconds(instant: datetime) -> tuple[int, int]:
    if not isinstance(instant, datetime):
        raise InvalidEncoding(f"expected a datetime, got {type(instant).__name__}")
    # utcoffset() rather than tzinfo: a tzinfo that returns no offset still means naive.
    aware = instant if instant.utcoffset() is not None else instant.replace(tzinfo=UTC)
    # timedelta arithmetic is exact; float timestamps would round near period boundaries.
    elapsed = aware - NTP_EPOCH
    return elapsed.days * 86400 + elapsed.seconds, elapsed.microseconds


def _require_period(period: int, offset: int) -> None:
    _require_int(period, "key period")
    _require_int(offset, "key period offset")
    if period <= 0:
        raise InvalidEncoding(f"key period must be positive, got {period}")
    if offset < 0:
        raise InvalidEncoding(f"key period offset must not be negative, got {offset}")


def _require_int(value: int, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidEncoding(f"{what} must be an integer, got {type(value).__name__}")
