"""RFC 6507 ECCSI on NIST P-256 with SHA-256 (kms-interface.md section 15).

The harness checks a provisioned key set with ``validate_signing_keys`` hundreds of times
per run, so [k]G uses a precomputed fixed-base table and [k]P a width-5 wNAF; points live
in Jacobian coordinates with a = -3 formulas. None of this is hardened against side
channels: it validates and issues test keys, it does not guard production secrets.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from functools import cache
from typing import Any

from conformance.crypto._arith import invert, mpz
from conformance.crypto.errors import CryptoError, InvalidEncoding, InvalidPoint

P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
A = P - 3
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
Q = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5
G = (GX, GY)
N = 32  # octets in a coordinate, a scalar and a hash
POINT_LENGTH = 1 + 2 * N
SIGNATURE_LENGTH = 2 * N + POINT_LENGTH

_SEC1_UNCOMPRESSED = 0x04
_SEC1_INFINITY = b"\x00"
_WINDOW = 4  # fixed-base window: 64 windows of 16 points
_WNAF_WIDTH = 5

# A point in Jacobian coordinates (X, Y, Z) stands for (X/Z^2, Y/Z^3); Z = 0 is infinity.
# Coordinates may be gmpy2 mpz values, hence Any.
Jacobian = tuple[Any, Any, Any]
Affine = tuple[Any, Any]
_INFINITY: Jacobian = (1, 1, 0)


@dataclass(frozen=True)
class EccsiKeyPair:
    """What a KMS provisions for one identifier: SSK (32 octets), PVT (65), and HS (32)."""

    ssk: bytes
    pvt: bytes
    hs: bytes


def decode_point(data: bytes) -> tuple[int, int]:
    """Affine (x, y) of an uncompressed 65-octet SEC1 point that lies on P-256."""
    if not isinstance(data, bytes | bytearray):
        raise InvalidEncoding(f"a point is bytes, got {type(data).__name__}")
    if bytes(data) == _SEC1_INFINITY:
        raise InvalidPoint("the point at infinity is not a valid key")
    if len(data) != POINT_LENGTH or data[0] != _SEC1_UNCOMPRESSED:
        raise InvalidEncoding(f"a P-256 point is 04 || x || y, {POINT_LENGTH} octets")
    x = int.from_bytes(data[1 : 1 + N], "big")
    y = int.from_bytes(data[1 + N :], "big")
    _require_on_curve(x, y)
    return x, y


def encode_point(point: tuple[int, int]) -> bytes:
    """Uncompressed SEC1 encoding 04 || x || y of an affine point on P-256."""
    try:
        x, y = (int(coordinate) for coordinate in point)
    except (TypeError, ValueError) as exc:
        raise InvalidPoint(f"a point is a pair of integers: {exc}") from exc
    _require_on_curve(x, y)
    return bytes([_SEC1_UNCOMPRESSED]) + x.to_bytes(N, "big") + y.to_bytes(N, "big")


def validate_public_auth_key(kpak: bytes) -> bool:
    """True when ``PubAuthKey`` is a P-256 point other than infinity (cofactor 1)."""
    try:
        decode_point(kpak)
    except CryptoError:
        return False
    return True


def kpak_from_ksak(ksak: int) -> bytes:
    """KPAK = [KSAK]G, the KMS public authentication key."""
    _require_scalar(ksak, "KSAK")
    return _encode_jacobian(_multiply_base(ksak))


def compute_hs(kpak: bytes, uid: bytes, pvt: bytes) -> bytes:
    """HS = SHA-256(G || KPAK || ID || PVT), every point in its 65-octet encoding."""
    return _hs(_canonical_point(kpak), _identifier(uid), _canonical_point(pvt))


def issue_signing_keys(ksak: int, uid: bytes, v: int | None = None) -> EccsiKeyPair:
    """SSK and PVT for identifier ``uid`` (RFC 6507 section 5.1.1).

    ``v`` fixes the ephemeral value for known-answer tests; without it a fresh v is drawn
    until HS and SSK are non-zero, as the RFC requires.
    """
    _require_scalar(ksak, "KSAK")
    identifier = _identifier(uid)
    kpak = kpak_from_ksak(ksak)
    while True:
        ephemeral = _random_scalar() if v is None else v
        _require_scalar(ephemeral, "v")
        pvt = _encode_jacobian(_multiply_base(ephemeral))
        hs = _hs(kpak, identifier, pvt)
        ssk = (ksak + int.from_bytes(hs, "big") * ephemeral) % Q
        if ssk != 0 and int.from_bytes(hs, "big") % Q != 0:
            return EccsiKeyPair(ssk=ssk.to_bytes(N, "big"), pvt=pvt, hs=hs)
        if v is not None:
            raise CryptoError("this v gives a zero HS or SSK; RFC 6507 requires another v")


def validate_signing_keys(kpak: bytes, uid: bytes, ssk: bytes, pvt: bytes) -> bool:
    """Client check of a provisioned pair (RFC 6507 section 5.1.2): [SSK]G = KPAK + [HS]PVT.

    False for any malformed input, including an SSK outside [1, q-1].
    """
    try:
        kpak_point = decode_point(kpak)
        pvt_point = decode_point(pvt)
        identifier = _identifier(uid)
        secret = _scalar_from_octets(ssk, "SSK")
    except CryptoError:
        return False
    hs = int.from_bytes(_hs(bytes(kpak), identifier, bytes(pvt)), "big")
    expected = _add_affine(_multiply(pvt_point, hs), kpak_point)
    return _same_point(_multiply_base(secret), expected)


def sign(  # noqa: PLR0917 - positional j is part of the crypto-layer contract
    message: bytes, uid: bytes, kpak: bytes, ssk: bytes, pvt: bytes, j: int | None = None
) -> bytes:
    """ECCSI signature r || s || PVT (129 octets) of ``message`` (RFC 6507 section 5.2.1).

    ``j`` fixes the ephemeral value for known-answer tests.
    """
    message = _octets(message, "message")
    secret = _scalar_from_octets(ssk, "SSK")
    pvt_octets = _canonical_point(pvt)
    hs = _hs(_canonical_point(kpak), _identifier(uid), pvt_octets)
    while True:
        ephemeral = _random_scalar() if j is None else j
        _require_scalar(ephemeral, "j")
        r = int(_affine_or_raise(_multiply_base(ephemeral))[0])
        he = int.from_bytes(_he(hs, r, message), "big")
        denominator = (he + r * secret) % Q
        if denominator != 0:
            s = int(invert(mpz(denominator), mpz(Q))) * ephemeral % Q
            return r.to_bytes(N, "big") + s.to_bytes(N, "big") + pvt_octets
        if j is not None:
            raise CryptoError("this j gives HE + r*SSK = 0 mod q; RFC 6507 requires another j")


def verify(message: bytes, signature: bytes, uid: bytes, kpak: bytes) -> bool:
    """True when ``signature`` is a valid ECCSI signature of ``message`` by ``uid``."""
    try:
        message = _octets(message, "message")
        signature = _octets(signature, "signature")
        if len(signature) != SIGNATURE_LENGTH:
            return False
        kpak_point = decode_point(kpak)
        pvt_point = decode_point(signature[2 * N :])
        identifier = _identifier(uid)
    except CryptoError:
        return False
    r = int.from_bytes(signature[:N], "big")
    s = int.from_bytes(signature[N : 2 * N], "big")
    if not (0 < r < P and 0 < s < Q):
        return False
    hs_octets = _hs(bytes(kpak), identifier, signature[2 * N :])
    hs = int.from_bytes(hs_octets, "big")
    he = int.from_bytes(_he(hs_octets, r, message), "big")
    y = _to_affine(_add_affine(_multiply(pvt_point, hs), kpak_point))
    if y is None:
        return False
    inner = _add(_multiply_base(he), _multiply(y, r))
    inner_affine = _to_affine(inner)
    if inner_affine is None:
        return False
    j = _to_affine(_multiply(inner_affine, s))
    return j is not None and int(j[0]) == r


def _hs(kpak: bytes, identifier: bytes, pvt: bytes) -> bytes:
    return hashlib.sha256(_G_OCTETS + kpak + identifier + pvt).digest()


def _he(hs: bytes, r: int, message: bytes) -> bytes:
    return hashlib.sha256(hs + r.to_bytes(N, "big") + message).digest()


def _canonical_point(data: bytes) -> bytes:
    decode_point(data)
    return bytes(data)


def _identifier(uid: bytes) -> bytes:
    return _octets(uid, "identifier")


def _octets(data: bytes, what: str) -> bytes:
    if not isinstance(data, bytes | bytearray):
        raise InvalidEncoding(f"{what} must be bytes, got {type(data).__name__}")
    return bytes(data)


def _scalar_from_octets(data: bytes, what: str) -> int:
    data = _octets(data, what)
    if len(data) != N:
        raise InvalidEncoding(f"{what} is {N} octets, got {len(data)}")
    value = int.from_bytes(data, "big")
    _require_scalar(value, what)
    return value


def _require_scalar(value: int, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidEncoding(f"{what} must be an integer, got {type(value).__name__}")
    if not 0 < value < Q:
        raise InvalidEncoding(f"{what} must lie in [1, q-1]")


def _random_scalar() -> int:
    return 1 + secrets.randbelow(Q - 1)


def _require_on_curve(x: int, y: int) -> None:
    if not (0 <= x < P and 0 <= y < P):
        raise InvalidPoint("a coordinate is not reduced modulo p")
    if (y * y - (x * x * x + A * x + B)) % P != 0:
        raise InvalidPoint("the point is not on P-256")


def _encode_jacobian(point: Jacobian) -> bytes:
    x, y = _affine_or_raise(point)
    return encode_point((int(x), int(y)))


def _affine_or_raise(point: Jacobian) -> Affine:
    affine = _to_affine(point)
    if affine is None:
        raise InvalidPoint("the result is the point at infinity")
    return affine


def _to_affine(point: Jacobian) -> Affine | None:
    x, y, z = point
    if z == 0:
        return None
    z_inv = invert(z, P)
    z_inv2 = z_inv * z_inv % P
    return x * z_inv2 % P, y * z_inv2 * z_inv % P


def _same_point(first: Jacobian, second: Jacobian) -> bool:
    # Cross-multiplying by the Z powers compares without the two field inversions.
    x1, y1, z1 = first
    x2, y2, z2 = second
    if z1 == 0 or z2 == 0:
        return bool(z1 == 0 and z2 == 0)
    z1z1 = z1 * z1 % P
    z2z2 = z2 * z2 % P
    return bool((x1 * z2z2 - x2 * z1z1) % P == 0 and (y1 * z2z2 * z2 - y2 * z1z1 * z1) % P == 0)


def _double(point: Jacobian) -> Jacobian:
    # dbl-2001-b (Bernstein-Lange EFD), valid because a = -3.
    x, y, z = point
    if z == 0 or y == 0:
        return _INFINITY
    delta = z * z % P
    gamma = y * y % P
    beta = x * gamma % P
    alpha = 3 * (x - delta) * (x + delta) % P
    x3 = (alpha * alpha - 8 * beta) % P
    z3 = ((y + z) * (y + z) - gamma - delta) % P
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % P
    return x3, y3, z3


def _add(first: Jacobian, second: Jacobian) -> Jacobian:
    x1, y1, z1 = first
    x2, y2, z2 = second
    if z1 == 0:
        return second
    if z2 == 0:
        return first
    z1z1 = z1 * z1 % P
    z2z2 = z2 * z2 % P
    u1 = x1 * z2z2 % P
    s1 = y1 * z2 * z2z2 % P
    h = (x2 * z1z1 - u1) % P
    r = (y2 * z1 * z1z1 - s1) % P
    if h == 0:
        return _double(first) if r == 0 else _INFINITY
    return _finish_add(u1, s1, h, r, z1 * z2 % P)


def _add_affine(first: Jacobian, second: Affine) -> Jacobian:
    # Mixed addition: with Z2 = 1 the Z2 powers drop out, saving four multiplications.
    x1, y1, z1 = first
    x2, y2 = second
    if z1 == 0:
        return x2, y2, 1
    z1z1 = z1 * z1 % P
    h = (x2 * z1z1 - x1) % P
    r = (y2 * z1 * z1z1 - y1) % P
    if h == 0:
        return _double(first) if r == 0 else _INFINITY
    return _finish_add(x1, y1, h, r, z1)


def _finish_add(u1: Any, s1: Any, h: Any, r: Any, z1z2: Any) -> Jacobian:
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    y3 = (r * (v - x3) - s1 * hhh) % P
    return x3, y3, z1z2 * h % P


def _multiply_base(k: int) -> Jacobian:
    table = _base_table()
    k %= Q
    result = _INFINITY
    mask = (1 << _WINDOW) - 1
    for window in table:
        digit = k & mask
        if digit:
            result = _add_affine(result, window[digit])
        k >>= _WINDOW
    return result


def _multiply(point: Affine, k: int) -> Jacobian:
    k %= Q
    odd_multiples = _odd_multiples(point)
    result = _INFINITY
    for digit in reversed(_wnaf(k)):
        result = _double(result)
        if digit > 0:
            result = _add_affine(result, odd_multiples[digit >> 1])
        elif digit < 0:
            x, y = odd_multiples[(-digit) >> 1]
            result = _add_affine(result, (x, P - y))
    return result


def _wnaf(k: int) -> list[int]:
    digits = []
    modulus = 1 << _WNAF_WIDTH
    half = modulus >> 1
    while k:
        if k & 1:
            digit = k & (modulus - 1)
            if digit >= half:
                digit -= modulus
            k -= digit
        else:
            digit = 0
        digits.append(digit)
        k >>= 1
    return digits


def _odd_multiples(point: Affine) -> list[Affine]:
    # P, 3P, ..., 15P: the digits a width-5 wNAF can produce.
    base = (mpz(point[0]), mpz(point[1]), mpz(1))
    twice = _double(base)
    multiples = [base]
    for _ in range((1 << (_WNAF_WIDTH - 2)) - 1):
        multiples.append(_add(multiples[-1], twice))
    return _batch_to_affine(multiples)


def _batch_to_affine(points: list[Jacobian]) -> list[Affine]:
    # Montgomery's trick: one inversion for the whole batch instead of one per point.
    # Callers only pass multiples of a point of prime order q below q, so no Z is 0.
    prefix = []
    running = mpz(1)
    for _, _, z in points:
        running = running * z % P
        prefix.append(running)
    inverse = invert(running, P)
    affine: list[Affine] = [(0, 0)] * len(points)
    for index in range(len(points) - 1, -1, -1):
        x, y, z = points[index]
        z_inv = inverse * prefix[index - 1] % P if index else inverse
        inverse = inverse * z % P
        z_inv2 = z_inv * z_inv % P
        affine[index] = (x * z_inv2 % P, y * z_inv2 * z_inv % P)
    return affine


@cache
def _base_table() -> list[list[Affine]]:
    # table[i][d] = [d * 16^i]G, so [k]G is one mixed addition per non-zero hex digit of k.
    windows = (Q.bit_length() + _WINDOW - 1) // _WINDOW
    table: list[list[Affine]] = []
    window_base: Jacobian = (mpz(GX), mpz(GY), mpz(1))
    for _ in range(windows):
        multiples = [window_base]
        for _ in range((1 << _WINDOW) - 2):
            multiples.append(_add(multiples[-1], window_base))
        next_base = _add(multiples[-1], window_base)
        table.append([(0, 0), *_batch_to_affine(multiples)])
        window_base = next_base
    return table


# Built last because it needs encode_point and its on-curve check.
_G_OCTETS = encode_point(G)
