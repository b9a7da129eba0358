"""SAKKE (RFC 6508, parameter set 1 of RFC 6509): known answers, key-set validation, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.crypto import sakke
from conformance.crypto.errors import CryptoError, DecryptionError, InvalidEncoding, InvalidPoint
from conformance.crypto.uid import mikey_sakke_uid

VECTORS = Path(__file__).parent / "vectors"
SAKKE_VECTORS = json.loads((VECTORS / "sakke.json").read_text())
RFC = SAKKE_VECTORS["rfc6508_appendix_a"]
KEYSETS = json.loads((VECTORS / "keysets.json").read_text())["keysets"]
SLOW = settings(max_examples=8, deadline=None)


def _hex(name: str) -> int:
    return int(RFC[name], 16)


def _point(x_name: str, y_name: str) -> bytes:
    return sakke.encode_point((_hex(x_name), _hex(y_name)))


Z_RFC = _point("Zx", "Zy")
RSK_RFC = _point("RSKx", "RSKy")
B_RFC = bytes.fromhex(RFC["b"])
SSV_RFC = bytes.fromhex(RFC["SSV"])


def _flip(data: bytes, bit: int) -> bytes:
    index = bit // 8 % len(data)
    return data[:index] + bytes([data[index] ^ (1 << bit % 8)]) + data[index + 1 :]


def _point_outside_subgroup() -> bytes:
    # A curve point whose x is a non-residue mod p is not in 2E(F_p) (2-descent with the
    # single rational 2-torsion point (0, 0)), so it cannot lie in the order-q subgroup,
    # which is 4E(F_p); that makes the expected verdict independent of the code under test.
    p = sakke.P
    x = 2
    while True:
        rhs = (x**3 - 3 * x) % p
        if pow(x, (p - 1) // 2, p) == p - 1 and pow(rhs, (p - 1) // 2, p) == 1:
            return sakke.encode_point((x, pow(rhs, (p + 1) // 4, p)))
        x += 1


# --- parameter set 1 ---------------------------------------------------------------------


def test_parameter_set_relations() -> None:
    assert sakke.P % 4 == 3
    assert (sakke.P + 1) % sakke.Q == 0
    cofactor = SAKKE_VECTORS["parameter_set_1"]["cofactor"]
    assert sakke.Q * cofactor == sakke.P + 1
    # validate_public_key checks [q]P = O.
    assert sakke.validate_public_key(sakke.encode_point((sakke.PX, sakke.PY)))


def test_g_is_the_pairing_of_p_with_itself() -> None:
    assert sakke.pairing((sakke.PX, sakke.PY), (sakke.PX, sakke.PY)) == sakke.G


# --- RFC 6508 Appendix A -----------------------------------------------------------------


def test_public_key_from_master_secret() -> None:
    assert sakke.public_key_from_master(_hex("z")) == Z_RFC


def test_rsk_issue_for_rfc_identifier() -> None:
    assert sakke.issue_rsk(_hex("z"), B_RFC) == RSK_RFC


def test_rfc_rsk_validates() -> None:
    assert sakke.validate_rsk(Z_RFC, B_RFC, RSK_RFC)


def test_hash_to_integer_range_gives_rfc_r() -> None:
    assert sakke.hash_to_integer_range(SSV_RFC + B_RFC, sakke.Q) == _hex("r")


def test_pairing_of_r_and_rsk_is_g_to_the_r() -> None:
    r_point = (_hex("Rbx"), _hex("Rby"))
    assert sakke.pairing(r_point, (_hex("RSKx"), _hex("RSKy"))) == _hex("g_r")


def test_mask_is_hash_of_g_to_the_r() -> None:
    g_r = bytes.fromhex(RFC["g_r"])
    assert sakke.hash_to_integer_range(g_r, 1 << 128) == _hex("mask")


def test_encapsulate_gives_rfc_encapsulated_data() -> None:
    encapsulated = sakke.encapsulate(SSV_RFC, B_RFC, Z_RFC)
    assert encapsulated == _point("Rbx", "Rby") + bytes.fromhex(RFC["H"])
    assert len(encapsulated) == sakke.ENCAPSULATED_LENGTH


def test_decapsulate_gives_the_ssv_back() -> None:
    encapsulated = _point("Rbx", "Rby") + bytes.fromhex(RFC["H"])
    assert sakke.decapsulate(encapsulated, B_RFC, Z_RFC, RSK_RFC) == SSV_RFC


# --- published and computed key sets (kms-interface.md section 18) -----------------------


@pytest.mark.parametrize("keyset", KEYSETS, ids=[k["name"] for k in KEYSETS])
def test_key_set_rsk_validates(keyset: dict[str, Any]) -> None:
    uid = mikey_sakke_uid(
        keyset["UserUri"],
        keyset["KmsUri"],
        keyset["period"],
        keyset["offset"],
        keyset["KeyPeriodNo"],
    )
    assert uid.hex() == keyset["UserID"]
    z = bytes.fromhex(keyset["PubEncKey"])
    assert sakke.validate_public_key(z)
    assert sakke.validate_rsk(z, uid, bytes.fromhex(keyset["RSK"]))


def test_key_set_rsk_fails_with_ascii_hex_uid() -> None:
    keyset = KEYSETS[1]
    uid_as_text = keyset["UserID"].encode("ascii")
    z = bytes.fromhex(keyset["PubEncKey"])
    assert not sakke.validate_rsk(z, uid_as_text, bytes.fromhex(keyset["RSK"]))


# --- negative cases ----------------------------------------------------------------------


@SLOW
@given(bit=st.integers(min_value=0, max_value=8 * 26 - 1))
def test_rsk_invalid_when_uid_changes_by_one_bit(bit: int) -> None:
    assert not sakke.validate_rsk(Z_RFC, _flip(B_RFC, bit), RSK_RFC)


@SLOW
@given(bit=st.integers(min_value=0, max_value=8 * sakke.POINT_LENGTH - 1))
def test_rsk_invalid_when_rsk_changes_by_one_bit(bit: int) -> None:
    assert not sakke.validate_rsk(Z_RFC, B_RFC, _flip(RSK_RFC, bit))


@SLOW
@given(bit=st.integers(min_value=0, max_value=8 * sakke.POINT_LENGTH - 1))
def test_rsk_invalid_when_z_changes_by_one_bit(bit: int) -> None:
    assert not sakke.validate_rsk(_flip(Z_RFC, bit), B_RFC, RSK_RFC)


def test_rsk_of_another_identity_is_invalid() -> None:
    other = sakke.issue_rsk(_hex("z"), b"2011-03\x00tel:+447700900123\x00")
    assert sakke.validate_public_key(other)
    assert not sakke.validate_rsk(Z_RFC, B_RFC, other)


def test_random_subgroup_point_is_not_an_rsk() -> None:
    assert not sakke.validate_rsk(Z_RFC, B_RFC, sakke.public_key_from_master(0x1234567))


def test_rsk_outside_subgroup_is_invalid() -> None:
    assert not sakke.validate_rsk(Z_RFC, B_RFC, _point_outside_subgroup())


def test_rsk_under_another_kms_is_invalid() -> None:
    other_z = sakke.public_key_from_master(_hex("z") + 1)
    assert not sakke.validate_rsk(other_z, B_RFC, RSK_RFC)


@pytest.mark.parametrize(
    "z",
    [
        _point_outside_subgroup(),
        sakke.encode_point((0, 0)),
        b"\x04" + bytes(256),
        b"\x00",
        b"",
        Z_RFC[:-1],
        Z_RFC + b"\x00",
        b"\x02" + Z_RFC[1:],
        b"\x04" + sakke.P.to_bytes(128, "big") + Z_RFC[129:],
        "not bytes",
    ],
    ids=[
        "outside-subgroup",
        "order-2",
        "zero-coordinates",
        "infinity-octet",
        "empty",
        "short",
        "long",
        "compressed-prefix",
        "x-equals-p",
        "str",
    ],
)
def test_public_key_rejected(z: Any) -> None:
    assert not sakke.validate_public_key(z)
    assert not sakke.validate_rsk(z, B_RFC, RSK_RFC)


@pytest.mark.parametrize("uid", [b"", "2011-02", None, 42])
def test_rsk_invalid_for_malformed_uid(uid: Any) -> None:
    assert not sakke.validate_rsk(Z_RFC, uid, RSK_RFC)


@pytest.mark.parametrize("rsk", [b"", b"\x04" + bytes(256), RSK_RFC[:100], None])
def test_rsk_invalid_for_malformed_rsk(rsk: Any) -> None:
    assert not sakke.validate_rsk(Z_RFC, B_RFC, rsk)


def test_decode_point_errors() -> None:
    with pytest.raises(InvalidEncoding):
        sakke.decode_point(b"\x04" + bytes(10))
    with pytest.raises(InvalidPoint):
        sakke.decode_point(b"\x04" + bytes(255) + b"\x01")
    with pytest.raises(InvalidEncoding):
        sakke.decode_point("04" * 257)  # type: ignore[arg-type]
    assert sakke.decode_point(Z_RFC) == (_hex("Zx"), _hex("Zy"))


def test_issue_rsk_refuses_a_plus_z_zero_mod_q() -> None:
    z = _hex("z")
    a = sakke.Q - z
    with pytest.raises(CryptoError):
        sakke.issue_rsk(z, a.to_bytes(128, "big"))


@pytest.mark.parametrize("z_master", [0, 1, sakke.Q, -5, "12"])
def test_master_secret_out_of_range(z_master: Any) -> None:
    with pytest.raises(CryptoError):
        sakke.public_key_from_master(z_master)


def test_pairing_rejects_first_argument_outside_subgroup() -> None:
    point = sakke.decode_point(_point_outside_subgroup())
    with pytest.raises(InvalidPoint):
        sakke.pairing(point, (sakke.PX, sakke.PY))
    with pytest.raises(InvalidPoint):
        sakke.pairing((1, 1), (sakke.PX, sakke.PY))


def test_decapsulate_with_wrong_rsk_raises() -> None:
    encapsulated = _point("Rbx", "Rby") + bytes.fromhex(RFC["H"])
    other = sakke.issue_rsk(_hex("z"), b"someone else")
    with pytest.raises(DecryptionError):
        sakke.decapsulate(encapsulated, B_RFC, Z_RFC, other)


@pytest.mark.parametrize("data", [b"", bytes(273), b"\x04" + bytes(300)])
def test_decapsulate_rejects_malformed_data(data: bytes) -> None:
    with pytest.raises(CryptoError):
        sakke.decapsulate(data, B_RFC, Z_RFC, RSK_RFC)


def test_encapsulate_rejects_bad_input() -> None:
    with pytest.raises(InvalidEncoding):
        sakke.encapsulate(b"short", B_RFC, Z_RFC)
    with pytest.raises(InvalidPoint):
        sakke.encapsulate(SSV_RFC, B_RFC, _point_outside_subgroup())


def test_hash_to_integer_range_rejects_bad_range() -> None:
    with pytest.raises(CryptoError):
        sakke.hash_to_integer_range(b"x", 1)


# --- properties --------------------------------------------------------------------------


@settings(max_examples=3, deadline=None)
@given(ssv=st.binary(min_size=16, max_size=16), uid=st.binary(min_size=1, max_size=40))
def test_encapsulate_decapsulate_round_trip(ssv: bytes, uid: bytes) -> None:
    rsk = sakke.issue_rsk(_hex("z"), uid)
    encapsulated = sakke.encapsulate(ssv, uid, Z_RFC)
    assert sakke.decapsulate(encapsulated, uid, Z_RFC, rsk) == ssv


@settings(max_examples=5, deadline=None)
@given(uid=st.binary(min_size=32, max_size=32))
def test_issued_rsk_validates(uid: bytes) -> None:
    assert sakke.validate_rsk(Z_RFC, uid, sakke.issue_rsk(_hex("z"), uid))


# --- the fixed-argument path of validate_rsk ---------------------------------------------


def _add(left: tuple[int, int] | None, right: tuple[int, int] | None) -> tuple[int, int] | None:
    # Affine addition on y^2 = x^3 - 3x, written out here so that the expected points do
    # not come from the code under test; None is the point at infinity.
    p = sakke.P
    if left is None:
        return right
    if right is None:
        return left
    (x1, y1), (x2, y2) = left, right
    if x1 == x2 and (y1 + y2) % p == 0:
        return None
    if left == right:
        slope = (3 * x1 * x1 - 3) * pow(2 * y1, -1, p) % p
    else:
        slope = (y2 - y1) * pow(x2 - x1, -1, p) % p
    x3 = (slope * slope - x1 - x2) % p
    return x3, (slope * (x1 - x3) - y1) % p


def _order_four_point() -> tuple[int, int]:
    # [2]T = (0, 0) exactly when x^2 = -3; one of the two roots has a rational y.
    p = sakke.P
    root = pow(p - 3, (p + 1) // 4, p)
    for x in (root, p - root):
        rhs = (x**3 - 3 * x) % p
        y = pow(rhs, (p + 1) // 4, p)
        if y * y % p == rhs:
            return x, y
    raise AssertionError("no rational point of order 4")


def _pf_multiply(left: int, right: int) -> int:
    # PF_p elements x and y are the classes of 1 + i*x and 1 + i*y (RFC 6508 section 16.2).
    p = sakke.P
    return (left + right) * pow(1 - left * right, -1, p) % p


@settings(max_examples=4, deadline=None)
@given(
    k_p=st.integers(min_value=2, max_value=sakke.Q - 1),
    k_z=st.integers(min_value=2, max_value=sakke.Q - 1),
)
def test_fixed_argument_product_equals_two_plain_pairings(k_p: int, k_z: int) -> None:
    s_p = sakke.decode_point(sakke.public_key_from_master(k_p))
    s_z = sakke.decode_point(sakke.public_key_from_master(k_z))
    tables = sakke._line_tables(Z_RFC)
    assert tables is not None
    real, imag = sakke._fixed_miller_product(tables, s_p, s_z)
    z_point = (_hex("Zx"), _hex("Zy"))
    expected = _pf_multiply(sakke.pairing((sakke.PX, sakke.PY), s_p), sakke.pairing(z_point, s_z))
    assert imag * pow(real, -1, sakke.P) % sakke.P == expected


def test_pairing_is_symmetric_on_the_subgroup() -> None:
    # The fixed-argument path swaps the arguments of <RSK, P> and <RSK, Z>.
    rsk = sakke.decode_point(RSK_RFC)
    z_point = (_hex("Zx"), _hex("Zy"))
    assert sakke.pairing(rsk, z_point) == sakke.pairing(z_point, rsk)


@pytest.mark.parametrize("torsion", ["order-2", "order-4", "order-4-negated"])
def test_rsk_plus_small_torsion_is_invalid(torsion: str) -> None:
    # <P, .> and <Z, .> cannot see a component of order 2 or 4, so only the subgroup
    # check stands between such an RSK and a wrong True.
    t4 = _order_four_point()
    point = {"order-2": (0, 0), "order-4": t4, "order-4-negated": (t4[0], sakke.P - t4[1])}
    shifted = _add(sakke.decode_point(RSK_RFC), point[torsion])
    assert shifted is not None
    assert not sakke.validate_rsk(Z_RFC, B_RFC, sakke.encode_point(shifted))


@settings(max_examples=6, deadline=None)
@given(start=st.integers(min_value=2, max_value=sakke.P - 1))
def test_subgroup_check_agrees_with_the_pairing_on_curve_points(start: int) -> None:
    p = sakke.P
    x = start
    while True:
        rhs = (x**3 - 3 * x) % p
        y = pow(rhs, (p + 1) // 4, p)
        if y * y % p == rhs and y != 0:
            break
        x += 1
    for point in ((x, y), _add((x, y), _add((x, y), (x, y))), _multiply_by_four((x, y))):
        assert point is not None
        try:
            sakke.pairing(point, (sakke.PX, sakke.PY))
            in_subgroup = True
        except InvalidPoint:
            in_subgroup = False
        assert sakke._in_order_q_subgroup(point) is in_subgroup


def _multiply_by_four(point: tuple[int, int]) -> tuple[int, int] | None:
    twice = _add(point, point)
    return _add(twice, twice)


@settings(max_examples=4, deadline=None)
@given(
    uid=st.binary(min_size=1, max_size=40).filter(lambda u: int.from_bytes(u, "big") % sakke.Q > 1),
    wrong=st.integers(min_value=2, max_value=10**6),
)
def test_validate_rsk_agrees_with_one_plain_pairing(uid: bytes, wrong: int) -> None:
    z_point = (_hex("Zx"), _hex("Zy"))
    a = int.from_bytes(uid, "big")
    q_point = _add(sakke.decode_point(sakke.public_key_from_master(a % sakke.Q)), z_point)
    assert q_point is not None
    right = sakke.issue_rsk(_hex("z"), uid)
    other = sakke.public_key_from_master(wrong)
    for rsk in (right, other):
        plain = sakke.pairing(sakke.decode_point(rsk), q_point) == sakke.G
        assert sakke.validate_rsk(Z_RFC, uid, rsk) is plain
    assert sakke.validate_rsk(Z_RFC, uid, right)
    assert not sakke.validate_rsk(Z_RFC, uid, other)


def test_validate_rsk_for_identifier_zero_mod_q_uses_the_plain_loop() -> None:
    uid = sakke.Q.to_bytes(128, "big")
    rsk = sakke.issue_rsk(_hex("z"), uid)
    assert sakke.validate_rsk(Z_RFC, uid, rsk)
    assert not sakke.validate_rsk(Z_RFC, uid, RSK_RFC)
