"""Annex F MIKEY-SAKKE UID: known answers (kms-interface.md section 14) and bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.crypto import InvalidEncoding, UnsupportedAlgorithm
from conformance.crypto.uid import (
    decode_user_id,
    encode_user_id,
    mikey_sakke_uid,
    uid_kdf_input,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "uid.json").read_text(encoding="utf-8")
)
EXAMPLE = VECTORS["worked_example"]
LEGACY = VECTORS["legacy_unix_epoch"]


def _example_args(example: dict[str, Any]) -> tuple[str, str, int, int, int]:
    return (
        example["user_uri"],
        example["kms_uri"],
        example["period"],
        example["offset"],
        example["period_no"],
    )


def test_worked_example_s_string() -> None:
    assert uid_kdf_input(*_example_args(EXAMPLE)).hex() == EXAMPLE["S"]


def test_worked_example_uid() -> None:
    assert mikey_sakke_uid(*_example_args(EXAMPLE)).hex() == EXAMPLE["uid"]


def test_worked_example_base64_user_id() -> None:
    uid = bytes.fromhex(EXAMPLE["uid"])
    assert encode_user_id(uid) == EXAMPLE["uid_base64"]
    assert decode_user_id(EXAMPLE["uid_base64"]) == uid


@pytest.mark.parametrize(
    "vector", VECTORS["vectors"], ids=lambda v: f"{v['user_uri']}-{v['period_no']}"
)
def test_further_uid_vectors(vector: dict[str, Any]) -> None:
    assert mikey_sakke_uid(*_example_args(vector)).hex() == vector["uid"]


def test_s_string_starting_with_ascii_zero_gives_another_uid() -> None:
    # Kapsch-era S strings start with "0" (0x30) instead of the octet 0x00 (section 14.3).
    s = uid_kdf_input(*_example_args(EXAMPLE))
    legacy = hashlib.sha256(b"0" + s[1:]).digest()
    assert s[0] == 0x00
    assert legacy != mikey_sakke_uid(*_example_args(EXAMPLE))


def test_unix_epoch_period_number_gives_another_uid() -> None:
    # The 2021 vendor sample's UserID is the UID for the Unix-epoch count 625 (section 13).
    args = (LEGACY["user_uri"], LEGACY["kms_uri"], LEGACY["period"], LEGACY["offset"])
    assert mikey_sakke_uid(*args, LEGACY["unix_epoch_period_no"]).hex() == LEGACY["uid"]
    assert mikey_sakke_uid(*args, LEGACY["ntp_period_no"]).hex() != LEGACY["uid"]


def test_zero_integers_are_one_octet() -> None:
    s = uid_kdf_input("a", "b", 0, 0, 0)
    assert s.endswith(b"\x00\x00\x01" * 3)


def test_hex_user_id_any_case_and_whitespace() -> None:
    uid = bytes.fromhex(EXAMPLE["uid"])
    text = EXAMPLE["uid"].upper()
    wrapped = f"  {text[:32]}\n\t{text[32:]}  "
    assert decode_user_id(wrapped) == uid
    assert encode_user_id(uid, "hex") == EXAMPLE["uid"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "3a81fb14",  # too short
        "3a81fb14c3b1d0fe43c9c577104d55a6d81788bfd2f09743c4557746a5a0353",  # 63 digits
        "3a81fb14c3b1d0fe43c9c577104d55a6d81788bfd2f09743c4557746a5a0353b00",  # 33 octets
        "3a81fb14c3b1d0fe43c9c577104d55a6d81788bfd2f09743c4557746a5a0353g",  # not hex
        "OoH7FMOx0P5DycV3EE1VptgXiL/S8JdDxFV3RqWgNT==",  # wrong padding
        "OoH7FMOx0P5DycV3EE1VptgXiL/S8JdDxFV3RqWgNTs",  # padding missing
        "OoH7FMOx0P5DycV3EE1VptgXiL_S8JdDxFV3RqWgNTs=",  # URL-safe alphabet
        "AAAA",  # base64 of 3 octets
        "0x3a81fb14c3b1d0fe43c9c577104d55a6d81788bfd2f09743c4557746a5a0353b",
    ],
)
def test_decode_user_id_rejects_garbage(text: str) -> None:
    with pytest.raises(InvalidEncoding):
        decode_user_id(text)


@pytest.mark.parametrize("value", [None, b"3a81", 42])
def test_decode_user_id_rejects_non_text(value: Any) -> None:
    with pytest.raises(InvalidEncoding):
        decode_user_id(value)


def test_encode_user_id_rejects_wrong_length_and_unknown_encoding() -> None:
    with pytest.raises(InvalidEncoding):
        encode_user_id(b"\x00" * 31)
    with pytest.raises(UnsupportedAlgorithm):
        encode_user_id(b"\x00" * 32, "base32")


@pytest.mark.parametrize(
    "args",
    [
        ("sip:a@b", "kms", -1, 0, 1),
        ("sip:a@b", "kms", 10, -1, 1),
        ("sip:a@b", "kms", 10, 0, -1),
        ("sip:a@b", "kms", "10", 0, 1),
        ("sip:a@b", "kms", 10, 0, True),
        (None, "kms", 10, 0, 1),
        ("sip:\udcff@b", "kms", 10, 0, 1),  # lone surrogate: not UTF-8 encodable
        ("x" * 70000, "kms", 10, 0, 1),  # does not fit the 2-octet length
    ],
)
def test_mikey_sakke_uid_rejects_bad_parameters(args: tuple[Any, ...]) -> None:
    with pytest.raises(InvalidEncoding):
        mikey_sakke_uid(*args)


def test_offset_not_below_period_is_accepted() -> None:
    # Row 5 of section 14.2 is such a vector; the UID layer must be able to reproduce it.
    assert len(mikey_sakke_uid("sip:a@b", "kms", 10, 20, 1)) == 32


@given(
    user_uri=st.text(alphabet=st.characters(codec="utf-8"), max_size=80),
    kms_uri=st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    period=st.integers(1, 2**40),
    offset=st.integers(0, 2**40),
    period_no=st.integers(0, 2**40),
)
def test_uid_is_32_octets_and_round_trips_through_both_encodings(
    user_uri: str, kms_uri: str, period: int, offset: int, period_no: int
) -> None:
    uid = mikey_sakke_uid(user_uri, kms_uri, period, offset, period_no)
    assert len(uid) == 32
    assert decode_user_id(encode_user_id(uid, "hex")) == uid
    assert decode_user_id(encode_user_id(uid, "base64")) == uid


@given(user_uri=st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_every_user_uri_changes_the_uid(user_uri: str) -> None:
    base = ("kms.example.org", 2592000, 0, 1388)
    assert mikey_sakke_uid(user_uri, *base) != mikey_sakke_uid(user_uri + "x", *base)


@given(text=st.text(max_size=100))
def test_decode_user_id_gives_a_uid_or_invalid_encoding(text: str) -> None:
    try:
        uid = decode_user_id(text)
    except InvalidEncoding:
        return
    assert len(uid) == 32
