"""TS 33.180 Annex F: the MIKEY-SAKKE UID (UserIdFormat "2").

UID = SHA-256(S), where S is laid out like the TS 33.220 Annex B KDF input string
(kms-interface.md section 14). The raw 32-octet UID is the identifier that ECCSI and
SAKKE operate on; ``UserID`` in a key set carries it as hex or base64 text.
"""

from __future__ import annotations

import base64
import hashlib
import re

from conformance.crypto.errors import InvalidEncoding, UnsupportedAlgorithm

UID_LENGTH = 32
FC = b"\x00"
P0 = b"MIKEY-SAKKE-UID"
USER_ID_ENCODINGS = ("base64", "hex")

_HEX_UID = re.compile(r"[0-9A-Fa-f]{64}")
_BASE64_UID = re.compile(r"[A-Za-z0-9+/]{43}=")
_WHITESPACE = re.compile(r"\s+")


def mikey_sakke_uid(user_uri: str, kms_uri: str, period: int, offset: int, period_no: int) -> bytes:
    """The 32-octet UID of ``user_uri`` for key period ``period_no`` (Annex F).

    ``offset >= period`` is accepted: Annex F forbids it for a KMS configuration, but
    published byte-encoding vectors use it (kms-interface.md section 14.2 row 5).
    """
    return hashlib.sha256(uid_kdf_input(user_uri, kms_uri, period, offset, period_no)).digest()


def uid_kdf_input(user_uri: str, kms_uri: str, period: int, offset: int, period_no: int) -> bytes:
    """The string S = FC || P0 || L0 || ... || P5 || L5 that the UID hashes."""
    parameters = (
        P0,
        _uri_octets(user_uri, "user URI"),
        _uri_octets(kms_uri, "KMS URI"),
        _minimal_octets(period, "key period"),
        _minimal_octets(offset, "key period offset"),
        _minimal_octets(period_no, "key period number"),
    )
    return FC + b"".join(_with_length(parameter) for parameter in parameters)


def encode_user_id(uid: bytes, encoding: str = "base64") -> str:
    """``UserID`` text for a raw UID: ``"base64"`` (standard alphabet, padded) or ``"hex"``."""
    if not isinstance(uid, bytes | bytearray) or len(uid) != UID_LENGTH:
        raise InvalidEncoding(f"a UID is {UID_LENGTH} octets")
    if encoding == "base64":
        return base64.b64encode(uid).decode("ascii")
    if encoding == "hex":
        return bytes(uid).hex()
    raise UnsupportedAlgorithm(
        f"unknown UserID encoding {encoding!r}; use one of {USER_ID_ENCODINGS}"
    )


def decode_user_id(text: str) -> bytes:
    """The raw UID from ``UserID`` text: 64 hex digits (any case) or base64 of 32 octets.

    Whitespace anywhere is ignored because XML pretty-printers wrap long text values.
    """
    if not isinstance(text, str):
        raise InvalidEncoding("UserID must be text")
    compact = _WHITESPACE.sub("", text)
    if _HEX_UID.fullmatch(compact):
        return bytes.fromhex(compact)
    if _BASE64_UID.fullmatch(compact):
        return base64.b64decode(compact, validate=True)
    raise InvalidEncoding(
        f"UserID is neither 64 hex digits nor base64 of {UID_LENGTH} octets "
        f"({len(compact)} characters after removing whitespace)"
    )


def _uri_octets(uri: str, what: str) -> bytes:
    # Implementations hash the URI exactly as written in the XML (section 14), so no
    # normalisation happens here.
    if not isinstance(uri, str):
        raise InvalidEncoding(f"{what} must be text")
    try:
        return uri.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidEncoding(f"{what} is not encodable as UTF-8: {exc}") from exc


def _minimal_octets(value: int, what: str) -> bytes:
    # bool is an int subclass; True as a key period would be a caller bug, not a value.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidEncoding(f"{what} must be an integer")
    if value < 0:
        raise InvalidEncoding(f"{what} must not be negative, got {value}")
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def _with_length(parameter: bytes) -> bytes:
    if len(parameter) > 0xFFFF:
        raise InvalidEncoding(f"a UID parameter of {len(parameter)} octets does not fit L_n")
    return parameter + len(parameter).to_bytes(2, "big")
