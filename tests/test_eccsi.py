"""RFC 6507 ECCSI: known answers (kms-interface.md sections 15.5, 18.1, 18.2), the section
14.3 legacy mistakes, bad input, and round-trip properties."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.crypto import CryptoError, InvalidEncoding, InvalidPoint
from conformance.crypto.eccsi import (
    GX,
    GY,
    P,
    Q,
    compute_hs,
    decode_point,
    encode_point,
    issue_signing_keys,
    kpak_from_ksak,
    sign,
    validate_public_auth_key,
    validate_signing_keys,
    verify,
)
from conformance.crypto.uid import mikey_sakke_uid, uid_kdf_input

VECTOR_DIR = Path(__file__).parent / "vectors"
RFC = json.loads((VECTOR_DIR / "eccsi.json").read_text(encoding="utf-8"))["rfc6507_appendix_a"]
KEYSETS: list[dict[str, Any]] = json.loads(
    (VECTOR_DIR / "keysets.json").read_text(encoding="utf-8")
)["keysets"]
COMPUTED_SET = next(keyset for keyset in KEYSETS if "KSAK" in keyset)

RFC_KSAK = int(RFC["KSAK"], 16)
RFC_ID = bytes.fromhex(RFC["ID"])
RFC_KPAK = bytes.fromhex(RFC["KPAK"])
RFC_PVT = bytes.fromhex(RFC["PVT"])
RFC_SSK = bytes.fromhex(RFC["SSK"])
RFC_MESSAGE = bytes.fromhex(RFC["M"])


def _uid(keyset: dict[str, Any]) -> bytes:
    return mikey_sakke_uid(
        keyset["UserUri"],
        keyset["KmsUri"],
        keyset["period"],
        keyset["offset"],
        keyset["KeyPeriodNo"],
    )


def _signing_keys(keyset: dict[str, Any]) -> tuple[bytes, bytes, bytes]:
    return (
        bytes.fromhex(keyset["PubAuthKey"]),
        bytes.fromhex(keyset["SSK"]),
        bytes.fromhex(keyset["PVT"]),
    )


def _flip_bit(data: bytes, bit: int) -> bytes:
    flipped = bytearray(data)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


# --- RFC 6507 Appendix A (section 15.5) -------------------------------------------------


def test_rfc6507_kpak_from_ksak() -> None:
    assert kpak_from_ksak(RFC_KSAK) == RFC_KPAK


def test_rfc6507_issued_pvt_hs_ssk() -> None:
    pair = issue_signing_keys(RFC_KSAK, RFC_ID, v=int(RFC["v"], 16))
    assert pair.pvt == RFC_PVT
    assert pair.hs.hex().upper() == RFC["HS"]
    assert pair.ssk == RFC_SSK
    assert compute_hs(RFC_KPAK, RFC_ID, RFC_PVT) == pair.hs


def test_rfc6507_key_pair_validates() -> None:
    assert validate_signing_keys(RFC_KPAK, RFC_ID, RFC_SSK, RFC_PVT)


def test_rfc6507_signature() -> None:
    signature = sign(RFC_MESSAGE, RFC_ID, RFC_KPAK, RFC_SSK, RFC_PVT, j=int(RFC["j"], 16))
    assert signature.hex().upper() == RFC["r"] + RFC["s"] + RFC["PVT"]
    assert verify(RFC_MESSAGE, signature, RFC_ID, RFC_KPAK)


def test_rfc6507_signature_fails_for_another_message_or_signer() -> None:
    signature = bytes.fromhex(RFC["r"] + RFC["s"] + RFC["PVT"])
    assert not verify(b"message\x01", signature, RFC_ID, RFC_KPAK)
    assert not verify(RFC_MESSAGE, signature, RFC_ID[:-1], RFC_KPAK)
    assert not verify(RFC_MESSAGE, signature, RFC_ID, kpak_from_ksak(RFC_KSAK + 1))


@pytest.mark.parametrize("k", [1, 2, 0x12345, 2**128 + 1, 2**255 - 19, Q - 1])
def test_base_multiplication_matches_cryptography(k: int) -> None:
    public = ec.derive_private_key(k, ec.SECP256R1()).public_key()
    assert kpak_from_ksak(k) == public.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


# --- Complete key sets (sections 18.1 and 18.2) ------------------------------------------


def test_computed_key_set_section_18_1() -> None:
    uid = _uid(COMPUTED_SET)
    assert uid.hex() == COMPUTED_SET["UserID"]
    pair = issue_signing_keys(int(COMPUTED_SET["KSAK"], 16), uid, v=int(COMPUTED_SET["v"], 16))
    assert pair.pvt.hex() == COMPUTED_SET["PVT"]
    assert pair.hs.hex() == COMPUTED_SET["HS"].lower()
    assert pair.ssk.hex() == COMPUTED_SET["SSK"].lower()
    assert kpak_from_ksak(int(COMPUTED_SET["KSAK"], 16)).hex() == COMPUTED_SET["PubAuthKey"]


@pytest.mark.parametrize("keyset", KEYSETS, ids=lambda keyset: keyset["name"])
def test_published_key_sets_validate_with_the_raw_uid(keyset: dict[str, Any]) -> None:
    uid = _uid(keyset)
    kpak, ssk, pvt = _signing_keys(keyset)
    assert uid.hex() == keyset["UserID"]
    assert validate_public_auth_key(kpak)
    assert validate_signing_keys(kpak, uid, ssk, pvt)


@pytest.mark.parametrize("keyset", KEYSETS, ids=lambda keyset: keyset["name"])
def test_key_sets_fail_with_the_ascii_hex_uid(keyset: dict[str, Any]) -> None:
    # Section 14.3: the 64 ASCII hex characters are not the identifier.
    kpak, ssk, pvt = _signing_keys(keyset)
    assert not validate_signing_keys(kpak, keyset["UserID"].encode("ascii"), ssk, pvt)


def test_key_set_fails_for_the_uid_of_an_s_string_starting_with_ascii_zero() -> None:
    s = uid_kdf_input(
        COMPUTED_SET["UserUri"],
        COMPUTED_SET["KmsUri"],
        COMPUTED_SET["period"],
        COMPUTED_SET["offset"],
        COMPUTED_SET["KeyPeriodNo"],
    )
    legacy_uid = hashlib.sha256(b"0" + s[1:]).digest()
    assert legacy_uid != _uid(COMPUTED_SET)
    assert not validate_signing_keys(*_with_uid(COMPUTED_SET, legacy_uid))


def test_key_set_fails_for_the_unix_epoch_period_uid() -> None:
    unix_period_no = (3599719634 - 2208988800) // COMPUTED_SET["period"]  # section 13 example
    legacy_uid = mikey_sakke_uid(
        COMPUTED_SET["UserUri"],
        COMPUTED_SET["KmsUri"],
        COMPUTED_SET["period"],
        COMPUTED_SET["offset"],
        unix_period_no,
    )
    assert legacy_uid != _uid(COMPUTED_SET)
    assert not validate_signing_keys(*_with_uid(COMPUTED_SET, legacy_uid))


def _with_uid(keyset: dict[str, Any], uid: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    kpak, ssk, pvt = _signing_keys(keyset)
    return kpak, uid, ssk, pvt


FIELDS = ("kpak", "uid", "ssk", "pvt")


@settings(max_examples=60, deadline=None)
@given(
    keyset=st.sampled_from(KEYSETS),
    field=st.sampled_from(FIELDS),
    data=st.data(),
)
def test_one_flipped_bit_fails_validation(
    keyset: dict[str, Any], field: str, data: st.DataObject
) -> None:
    kpak, uid, ssk, pvt = _with_uid(keyset, _uid(keyset))
    values = dict(zip(FIELDS, (kpak, uid, ssk, pvt), strict=True))
    bit = data.draw(st.integers(0, len(values[field]) * 8 - 1), label="bit")
    values[field] = _flip_bit(values[field], bit)
    assert not validate_signing_keys(**values)


# --- Bad input -----------------------------------------------------------------------------

G_OCTETS = bytes.fromhex("04" + f"{GX:064x}" + f"{GY:064x}")
OFF_CURVE = bytes.fromhex("04" + f"{GX:064x}" + f"{GY + 1:064x}")

BAD_POINTS: list[tuple[str, Any, type[CryptoError]]] = [
    ("infinity", b"\x00", InvalidPoint),
    ("off-curve", OFF_CURVE, InvalidPoint),
    ("zero", b"\x04" + bytes(64), InvalidPoint),
    ("x-not-reduced", b"\x04" + (P).to_bytes(32, "big") + G_OCTETS[33:], InvalidPoint),
    ("compressed", b"\x02" + G_OCTETS[1:33], InvalidEncoding),
    ("wrong-prefix", b"\x05" + G_OCTETS[1:], InvalidEncoding),
    ("short", G_OCTETS[:-1], InvalidEncoding),
    ("long", G_OCTETS + b"\x00", InvalidEncoding),
    ("empty", b"", InvalidEncoding),
    ("text", G_OCTETS.hex(), InvalidEncoding),
    ("none", None, InvalidEncoding),
]


def test_point_encoding_round_trip() -> None:
    assert decode_point(G_OCTETS) == (GX, GY)
    assert encode_point((GX, GY)) == G_OCTETS
    assert decode_point(bytearray(RFC_PVT)) == decode_point(RFC_PVT)


@pytest.mark.parametrize(("name", "data", "error"), BAD_POINTS, ids=[b[0] for b in BAD_POINTS])
def test_decode_point_rejects(name: str, data: Any, error: type[CryptoError]) -> None:
    with pytest.raises(error):
        decode_point(data)
    assert not validate_public_auth_key(data)


@pytest.mark.parametrize(("name", "data", "error"), BAD_POINTS, ids=[b[0] for b in BAD_POINTS])
def test_bad_points_fail_validation_and_verification(
    name: str, data: Any, error: type[CryptoError]
) -> None:
    r_and_s = bytes.fromhex(RFC["r"] + RFC["s"])
    pvt_part = data if isinstance(data, bytes) else b""
    assert not validate_signing_keys(data, RFC_ID, RFC_SSK, RFC_PVT)
    assert not validate_signing_keys(RFC_KPAK, RFC_ID, RFC_SSK, data)
    assert not verify(RFC_MESSAGE, r_and_s + pvt_part, RFC_ID, RFC_KPAK)
    assert not verify(RFC_MESSAGE, r_and_s + RFC_PVT, RFC_ID, data)
    with pytest.raises(CryptoError):
        compute_hs(data, RFC_ID, RFC_PVT)
    with pytest.raises(CryptoError):
        sign(RFC_MESSAGE, RFC_ID, RFC_KPAK, RFC_SSK, data)


@pytest.mark.parametrize("point", [(GX, GY + 1), (P + GX, GY), (-1, 0), ("x", "y"), (GX,), None])
def test_encode_point_rejects_non_points(point: Any) -> None:
    with pytest.raises(InvalidPoint):
        encode_point(point)


@pytest.mark.parametrize(
    "ssk",
    [
        bytes(32),  # zero
        Q.to_bytes(32, "big"),
        (Q + 1).to_bytes(32, "big"),
        RFC_SSK[:-1],
        RFC_SSK + b"\x00",
        RFC_SSK.hex().encode(),
        None,
    ],
    ids=["zero", "q", "q+1", "short", "long", "hex-text", "none"],
)
def test_malformed_ssk_fails_validation_and_signing(ssk: Any) -> None:
    assert not validate_signing_keys(RFC_KPAK, RFC_ID, ssk, RFC_PVT)
    with pytest.raises(InvalidEncoding):
        sign(RFC_MESSAGE, RFC_ID, RFC_KPAK, ssk, RFC_PVT)


@pytest.mark.parametrize("uid", [None, "2011-02\x00tel:+447700900123\x00", 12345])
def test_non_octet_identifier_fails(uid: Any) -> None:
    assert not validate_signing_keys(RFC_KPAK, uid, RFC_SSK, RFC_PVT)
    with pytest.raises(InvalidEncoding):
        compute_hs(RFC_KPAK, uid, RFC_PVT)
    with pytest.raises(InvalidEncoding):
        issue_signing_keys(RFC_KSAK, uid)


@pytest.mark.parametrize("scalar", [0, Q, -1, 2**256, True, "12345"])
def test_scalars_outside_1_to_q_minus_1_are_rejected(scalar: Any) -> None:
    with pytest.raises(InvalidEncoding):
        kpak_from_ksak(scalar)
    with pytest.raises(InvalidEncoding):
        issue_signing_keys(scalar, RFC_ID)
    with pytest.raises(InvalidEncoding):
        issue_signing_keys(RFC_KSAK, RFC_ID, v=scalar)
    with pytest.raises(InvalidEncoding):
        sign(RFC_MESSAGE, RFC_ID, RFC_KPAK, RFC_SSK, RFC_PVT, j=scalar)


def test_missing_ksak_is_rejected() -> None:
    # None means "draw one" only for v and j, never for the KMS master secret.
    with pytest.raises(InvalidEncoding):
        kpak_from_ksak(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidEncoding):
        issue_signing_keys(None, RFC_ID)  # type: ignore[arg-type]


def _signature_with(r: int | None = None, s: int | None = None) -> bytes:
    r_octets = bytes.fromhex(RFC["r"]) if r is None else r.to_bytes(32, "big")
    s_octets = bytes.fromhex(RFC["s"]) if s is None else s.to_bytes(32, "big")
    return r_octets + s_octets + RFC_PVT


@pytest.mark.parametrize(
    "signature",
    [
        _signature_with(r=0),
        _signature_with(s=0),
        _signature_with(s=Q),
        _signature_with(r=P),
        _signature_with()[:-1],
        _signature_with() + b"\x00",
        b"",
        None,
        _signature_with().hex(),
    ],
    ids=["r0", "s0", "sq", "rp", "short", "long", "empty", "none", "text"],
)
def test_malformed_signature_does_not_verify(signature: Any) -> None:
    assert not verify(RFC_MESSAGE, signature, RFC_ID, RFC_KPAK)


def test_non_octet_message_is_rejected() -> None:
    signature = _signature_with()
    assert not verify("message\x00", signature, RFC_ID, RFC_KPAK)  # type: ignore[arg-type]
    with pytest.raises(InvalidEncoding):
        sign("message", RFC_ID, RFC_KPAK, RFC_SSK, RFC_PVT)  # type: ignore[arg-type]


# --- Properties ----------------------------------------------------------------------------


@given(data=st.binary(max_size=70) | st.binary(min_size=64, max_size=64).map(b"\x04".__add__))
def test_decode_point_gives_a_curve_point_or_a_package_error(data: bytes) -> None:
    try:
        x, y = decode_point(data)
    except CryptoError:
        assert not validate_public_auth_key(data)
        return
    assert encode_point((x, y)) == data


SCALARS = st.integers(1, Q - 1)


@settings(max_examples=25, deadline=None)
@given(ksak=SCALARS, uid=st.binary(max_size=64), v=st.none() | SCALARS)
def test_issued_keys_validate(ksak: int, uid: bytes, v: int | None) -> None:
    pair = issue_signing_keys(ksak, uid, v)
    kpak = kpak_from_ksak(ksak)
    assert validate_signing_keys(kpak, uid, pair.ssk, pair.pvt)
    assert compute_hs(kpak, uid, pair.pvt) == pair.hs
    assert not validate_signing_keys(kpak, uid + b"\x00", pair.ssk, pair.pvt)


@settings(max_examples=25, deadline=None)
@given(
    message=st.binary(max_size=200),
    uid=st.binary(min_size=1, max_size=64),
    j=st.none() | SCALARS,
)
def test_signatures_verify(message: bytes, uid: bytes, j: int | None) -> None:
    pair = issue_signing_keys(RFC_KSAK, uid)
    signature = sign(message, uid, RFC_KPAK, pair.ssk, pair.pvt, j)
    assert len(signature) == 129
    assert signature[64:] == pair.pvt
    assert verify(message, signature, uid, RFC_KPAK)
    assert not verify(message + b"\x00", signature, uid, RFC_KPAK)
    assert not verify(message, signature, uid[:-1], RFC_KPAK)
