"""The SAKKE curve of RFC 6509 parameter set 1 and its point arithmetic (Jacobian, a = -3).

Split from sakke.py (issue 17): the parameters p, q, P and g, and the additions, doublings,
scalar multiplications and NAF digits sakke.py builds RSK issue, validation and the
pairing on. Numbers are the backend's integers (conformance.crypto._arith).
"""

from __future__ import annotations

from typing import Any

from conformance.crypto import _arith
from conformance.crypto.errors import InvalidPoint

P = int(
    "997ABB1F0A563FDA65C61198DAD0657A416C0CE19CB48261BE9AE358B3E01A2E"
    "F40AAB27E2FC0F1B228730D531A59CB0E791B39FF7C88A19356D27F4A666A6D0"
    "E26C6487326B4CD4512AC5CD65681CE1B6AFF4A831852A82A7CF3C521C3C09AA"
    "9F94D6AF56971F1FFCE3E82389857DB080C5DF10AC7ACE87666D807AFEA85FEB",
    16,
)
Q = int(
    "265EAEC7C2958FF69971846636B4195E905B0338672D20986FA6B8D62CF8068B"
    "BD02AAC9F8BF03C6C8A1CC354C69672C39E46CE7FDF222864D5B49FD2999A9B4"
    "389B1921CC9AD335144AB173595A07386DABFD2A0C614AA0A9F3CF14870F026A"
    "A7E535ABD5A5C7C7FF38FA08E2615F6C203177C42B1EB3A1D99B601EBFAA17FB",
    16,
)
PX = int(
    "53FC09EE332C29AD0A7990053ED9B52A2B1A2FD60AEC69C698B2F204B6FF7CBF"
    "B5EDB6C0F6CE2308AB10DB9030B09E1043D5F22CDB9DFA55718BD9E7406CE890"
    "9760AF765DD5BCCB337C86548B72F2E1A702C3397A60DE74A7C1514DBA66910D"
    "D5CFB4CC80728D87EE9163A5B63F73EC80EC46C4967E0979880DC8ABEAE63895",
    16,
)
PY = int(
    "0A8249063F6009F1F9F1F0533634A135D3E82016029906963D778D821E141178"
    "F5EA69F4654EC2B9E7F7F5E5F0DE55F66B598CCF9A140B2E416CFF0CA9E032B9"
    "70DAE117AD547C6CCAD696B5B7652FE0AC6F1E80164AA989492D979FC5A4D5F2"
    "13515AD7E9CB99A980BDAD5AD5BB4636ADB9B5706A67DCDE75573FD71BEF16D7",
    16,
)
G = int(
    "66FC2A432B6EA392148F15867D623068C6A87BD1FB94C41E27FABE658E015A87"
    "371E94744C96FEDA449AE9563F8BC446CBFDA85D5D00EF577072DA8F541721BE"
    "EE0FAED1828EAB90B99DFB0138C7843355DF0460B4A9FD74B4F1A32BCAFA1FFA"
    "D682C033A7942BCCE3720F20B9B7B0403C8CAE87B7A0042ACDE0FAB36461EA46",
    16,
)
Point = tuple[int, int]
_Jacobian = tuple[Any, Any, Any]

_p = _arith.mpz(P)


# --- point arithmetic (Jacobian, a = -3) ------------------------------------------------


def _affine_or_raise(point: _Jacobian) -> Point:
    affine = _to_affine(point)
    if affine is None:
        raise InvalidPoint("the result is the point at infinity")
    return affine


def _to_affine(point: _Jacobian) -> Point | None:
    x, y, z = point
    if z % _p == 0:
        return None
    z_inv = _arith.invert(z, _p)
    z_inv2 = z_inv * z_inv % _p
    return int(x * z_inv2 % _p), int(y * z_inv2 * z_inv % _p)


def _double(point: _Jacobian) -> _Jacobian:
    p = _p
    x, y, z = point
    delta = z * z % p
    gamma = y * y % p
    beta = x * gamma % p
    alpha = 3 * (x - delta) * (x + delta) % p
    x3 = (alpha * alpha - 8 * beta) % p
    z3 = 2 * y * z % p
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % p
    return x3, y3, z3


def _add_mixed(point: _Jacobian, affine: tuple[Any, Any]) -> _Jacobian:
    p = _p
    x1, y1, z1 = point
    if z1 % p == 0:
        return affine[0], affine[1], _arith.mpz(1)
    z1z1 = z1 * z1 % p
    u2 = affine[0] * z1z1 % p
    s2 = affine[1] * z1 * z1z1 % p
    h = (u2 - x1) % p
    rr = (s2 - y1) % p
    if h == 0:
        if rr == 0:
            return _double(point)
        return _arith.mpz(1), _arith.mpz(1), _arith.mpz(0)
    hh = h * h % p
    hhh = h * hh % p
    v = x1 * hh % p
    x3 = (rr * rr - hhh - 2 * v) % p
    y3 = (rr * (v - x3) - y1 * hhh) % p
    return x3, y3, z1 * h % p


def _add_affine(point: _Jacobian, affine: Point) -> _Jacobian:
    return _add_mixed(point, (_arith.mpz(affine[0]), _arith.mpz(affine[1])))


def _multiply(k: Any, affine: Point) -> _Jacobian:
    """[k]X by a width-5 NAF over odd multiples of X."""
    table = _odd_multiples(affine, 8)
    result: _Jacobian = (_arith.mpz(1), _arith.mpz(1), _arith.mpz(0))
    for digit in reversed(_naf(int(k), 5)):
        result = _double(result)
        if digit > 0:
            result = _add_mixed(result, table[digit // 2])
        elif digit < 0:
            x, y = table[-digit // 2]
            result = _add_mixed(result, (x, -y % _p))
    return result


def _multiply_base(k: int) -> _Jacobian:
    """[k]P with the fixed-base table of P: one mixed addition per 4-bit window."""
    windows = _base_windows(-(-k.bit_length() // _BASE_WINDOW))
    result: _Jacobian = (_arith.mpz(1), _arith.mpz(1), _arith.mpz(0))
    index = 0
    while k:
        digit = k & (_BASE_RADIX - 1)
        if digit:
            result = _add_mixed(result, windows[index][digit - 1])
        k >>= _BASE_WINDOW
        index += 1
    return result


_BASE_WINDOW = 4
_BASE_RADIX = 1 << _BASE_WINDOW
_base_table: list[list[tuple[Any, Any]]] = []


def _base_windows(count: int) -> list[list[tuple[Any, Any]]]:
    # Row j holds [d * 16^j]P for d = 1..15 in affine form; rows are added on demand so a
    # 256-bit UID never pays for the 1024-bit rows that only issue_rsk needs.
    while len(_base_table) < count:
        if _base_table:
            start = _double(_double(_double(_double(_jacobian(_base_table[-1][0])))))
            start_affine = _to_affine(start)
            assert start_affine is not None
        else:
            start_affine = (PX, PY)
        row = [_jacobian((_arith.mpz(start_affine[0]), _arith.mpz(start_affine[1])))]
        for _ in range(_BASE_RADIX - 2):
            row.append(_add_mixed(row[-1], (row[0][0], row[0][1])))
        _base_table.append(_normalise(row))
    return _base_table


def _jacobian(affine: tuple[Any, Any]) -> _Jacobian:
    return affine[0], affine[1], _arith.mpz(1)


def _odd_multiples(affine: Point, count: int) -> list[tuple[Any, Any]]:
    base = (_arith.mpz(affine[0]), _arith.mpz(affine[1]))
    twice = _to_affine(_double(_jacobian(base)))
    if twice is None:
        raise InvalidPoint("a point of order 2 has no odd multiples table")
    row = [_jacobian(base)]
    for _ in range(count - 1):
        row.append(_add_affine(row[-1], twice))
    return _normalise(row)


def _normalise(points: list[_Jacobian]) -> list[tuple[Any, Any]]:
    """Affine forms of many points with one inversion (Montgomery's trick)."""
    p = _p
    prefix = [_arith.mpz(1)]
    for _, _, z in points:
        prefix.append(prefix[-1] * z % p)
    inverse = _arith.invert(prefix[-1], p)
    result: list[tuple[Any, Any]] = []
    for index in range(len(points) - 1, -1, -1):
        x, y, z = points[index]
        z_inv = inverse * prefix[index] % p
        inverse = inverse * z % p
        z_inv2 = z_inv * z_inv % p
        result.append((x * z_inv2 % p, y * z_inv2 * z_inv % p))
    result.reverse()
    return result


def _naf(k: int, width: int) -> list[int]:
    """Width-w non-adjacent form, least significant digit first."""
    digits: list[int] = []
    modulus = 1 << width
    while k:
        if k & 1:
            digit = k & (modulus - 1)
            if digit >= modulus >> 1:
                digit -= modulus
            k -= digit
        else:
            digit = 0
        digits.append(digit)
        k >>= 1
    return digits
