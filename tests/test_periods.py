"""NTP time, key periods and the keyprov time segment (kms-interface.md sections 3.2 and 13)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.crypto import InvalidEncoding
from conformance.crypto.periods import (
    NTP_UNIX_OFFSET,
    datetime_from_ntp,
    decode_ntp_time,
    encode_ntp_time,
    key_period_no,
    ntp_seconds,
    period_end,
    period_start,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "periods.json").read_text(encoding="utf-8")
)
INSTANTS = VECTORS["instants"]
SEGMENT_VECTORS = [vector for vector in INSTANTS if "segment" in vector]

# NTP era 0: the 32-bit seconds field of the keyprov time segment.
ERA_0 = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2036, 2, 7), timezones=st.just(UTC)
)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize("vector", INSTANTS, ids=lambda v: v["utc"])
def test_ntp_seconds_and_period_of_spec_instants(vector: dict[str, Any]) -> None:
    instant = _utc(vector["utc"])
    seconds = vector["ntp_seconds"]
    assert ntp_seconds(instant) == seconds
    assert datetime_from_ntp(seconds) == instant
    assert key_period_no(instant, vector["period"], vector["offset"]) == vector["period_no"]
    assert key_period_no(seconds, vector["period"], vector["offset"]) == vector["period_no"]


@pytest.mark.parametrize("vector", SEGMENT_VECTORS, ids=lambda v: v["segment"])
def test_keyprov_time_segment_example(vector: dict[str, Any]) -> None:
    assert decode_ntp_time(vector["segment"]) == vector["ntp_seconds"]
    assert decode_ntp_time(vector["segment"].lower()) == vector["ntp_seconds"]
    assert encode_ntp_time(_utc(vector["utc"])) == vector["segment"]
    assert encode_ntp_time(vector["ntp_seconds"]) == vector["segment"]


def test_naive_datetime_is_utc() -> None:
    aware = _utc(INSTANTS[0]["utc"])
    assert ntp_seconds(aware.replace(tzinfo=None)) == ntp_seconds(aware)


def test_offset_datetime_is_converted_to_utc() -> None:
    aware = _utc(INSTANTS[0]["utc"])
    paris = aware.astimezone(timezone(timedelta(hours=1)))
    assert ntp_seconds(paris) == INSTANTS[0]["ntp_seconds"]


def test_unix_epoch_count_is_not_the_key_period() -> None:
    # The 2021 sample's KeyPeriodNo 625 counts from 1970 (section 13 pitfall).
    vector = INSTANTS[-1]
    unix_count = (vector["ntp_seconds"] - NTP_UNIX_OFFSET) // vector["period"]
    assert unix_count == 625
    assert key_period_no(_utc(vector["utc"]), vector["period"], vector["offset"]) != unix_count


def test_microseconds_become_the_fraction_and_decoding_ignores_it() -> None:
    instant = datetime(2014, 2, 23, 8, 39, 14, 500000, tzinfo=UTC)
    assert encode_ntp_time(instant) == "D6B4323280000000"
    assert decode_ntp_time("D6B43232FFFFFFFF") == 3602133554


def test_period_boundaries() -> None:
    # Period k covers [k*P + O, (k+1)*P + O): its last second is still in k.
    start = period_start(1389, 2592000, 100)
    end = period_end(1389, 2592000, 100)
    assert ntp_seconds(start) == 1389 * 2592000 + 100
    assert end - start == timedelta(seconds=2592000)
    assert key_period_no(start, 2592000, 100) == 1389
    assert key_period_no(end - timedelta(microseconds=1), 2592000, 100) == 1389
    assert key_period_no(end, 2592000, 100) == 1390


@pytest.mark.parametrize(
    "segment",
    [
        "",
        "D6B43232",
        "D6B4323200000000 ",
        " D6B4323200000000",
        "D6B4323200000000\n",
        "D6B43232000000000",
        "D6B4_32320000000",
        "0xD6B43232000000",
        "+6B4323200000000",
        "D6B432320000000G",
        "\uff10" * 16,  # full-width digits that int() would accept
    ],
)
def test_decode_ntp_time_rejects_anything_but_16_hex_digits(segment: str) -> None:
    with pytest.raises(InvalidEncoding):
        decode_ntp_time(segment)


@pytest.mark.parametrize("value", [None, 3602133554, b"D6B4323200000000"])
def test_decode_ntp_time_rejects_non_text(value: Any) -> None:
    with pytest.raises(InvalidEncoding):
        decode_ntp_time(value)


@pytest.mark.parametrize(
    "instant",
    [-1, 2**32, datetime(2036, 2, 8, tzinfo=UTC), datetime(1899, 12, 31, tzinfo=UTC)],
)
def test_encode_ntp_time_rejects_instants_outside_era_0(instant: datetime | int) -> None:
    with pytest.raises(InvalidEncoding):
        encode_ntp_time(instant)


@pytest.mark.parametrize(
    ("period", "offset"), [(0, 0), (-10, 0), (10, -1), ("10", 0), (10, None), (True, 0)]
)
def test_key_period_no_rejects_bad_period_parameters(period: Any, offset: Any) -> None:
    with pytest.raises(InvalidEncoding):
        key_period_no(3602133554, period, offset)
    with pytest.raises(InvalidEncoding):
        period_start(1389, period, offset)


@pytest.mark.parametrize("instant", [None, "2014-02-23T08:39:14Z", 3.5])
def test_time_functions_reject_non_instants(instant: Any) -> None:
    with pytest.raises(InvalidEncoding):
        key_period_no(instant, 2592000, 0)
    with pytest.raises(InvalidEncoding):
        ntp_seconds(instant)


def test_datetime_from_ntp_rejects_out_of_range_seconds() -> None:
    with pytest.raises(InvalidEncoding):
        datetime_from_ntp(10**15)
    with pytest.raises(InvalidEncoding):
        datetime_from_ntp("0")  # type: ignore[arg-type]


@given(instant=ERA_0)
def test_segment_round_trip_keeps_whole_seconds(instant: datetime) -> None:
    segment = encode_ntp_time(instant)
    assert len(segment) == 16
    assert segment == segment.upper()
    assert datetime_from_ntp(decode_ntp_time(segment)) == instant.replace(microsecond=0)


@given(seconds=st.integers(0, 2**32 - 1))
def test_ntp_seconds_round_trip(seconds: int) -> None:
    assert decode_ntp_time(encode_ntp_time(seconds)) == seconds
    assert ntp_seconds(datetime_from_ntp(seconds)) == seconds


@given(
    instant=ERA_0,
    period=st.integers(1, 2**31),
    offset=st.integers(0, 2**31),
)
def test_instant_lies_in_its_key_period(instant: datetime, period: int, offset: int) -> None:
    number = key_period_no(instant, period, offset)
    assert period_start(number, period, offset) <= instant < period_end(number, period, offset)


@given(segment=st.text(max_size=20))
def test_decode_ntp_time_gives_seconds_or_invalid_encoding(segment: str) -> None:
    try:
        seconds = decode_ntp_time(segment)
    except InvalidEncoding:
        return
    assert 0 <= seconds < 2**32
