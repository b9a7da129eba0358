"""Domain configuration of the reference KMS: a TOML file whose every key has a default.

Example (every key optional)::

    kms_uri = "kms.example.org"
    cert_uri = "cert1.kms.example.org"
    issuer = "www.example.org"
    user_key_period = 2592000
    user_key_offset = 0
    kms_domain_list = ["sec1.example.org", "sec2.example.org"]
    kat = false                    # true: RFC 6507/6508 master secrets (kms-interface.md 18.1)
    clock = "2014-01-26T10:07:14Z" # a fixed time, for tests
    eccsi_fixed_v = "23456"        # hex; a fixed ECCSI ephemeral v, for tests
    cache_num = 3
    request_window_s = 30
    user_id_encoding = "base64"    # or "hex"
    kms_cert_rotation = false      # true: `kms-cert --state DIR replace` swaps the own
                                   # certificate (serve --cert-rotation; refkms/certchange.py)

    [protection]
    encryption = "none"            # "none" | "message" | "keys"
    signing = true
    rotate_trk = false             # deliver a NewTransportKey in init and keyprov
    rotate_ink = false             # ... a NewIntegrityKey (a first InK to a TrK-only user)
                                   # (serve --rotate trk,ink; refkms/rotation.py)

    [[users]]                      # trk/ink hex: generated in the state dir when absent
    uri = "sip:alice@example.org"
    trk_id = "dHJrLjEuYWxpY2U="    # base64; 1..64 octets
    ink_id = "aW5rLjEuYWxpY2U="    # omit ink_id and ink for a user without an InK

    [[partners]]
    kms_uri = "kms.partner1.example.net"
    cert_uri = "cert1.kms.partner1.example.net"

    [lookup]
    "sip:dave@partner1.example.net" = "kms.partner1.example.net"
"""

from __future__ import annotations

import base64
import binascii
import tomllib
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

ENCRYPTION_POLICIES = ("none", "message", "keys")
USER_ID_ENCODINGS = ("base64", "hex")


class ConfigError(ValueError):
    """The configuration file names a bad key or value; the message says which."""


@dataclass(frozen=True)
class UserConfig:
    uri: str
    trk_id: bytes
    ink_id: bytes | None
    trk: bytes | None = None
    ink: bytes | None = None


@dataclass(frozen=True)
class PartnerConfig:
    kms_uri: str
    cert_uri: str


@dataclass(frozen=True)
class ProtectionPolicy:
    encryption: str = "none"
    signing: bool = True
    rotate_trk: bool = False
    rotate_ink: bool = False


@dataclass(frozen=True)
class KmsConfig:
    kms_uri: str = "kms.example.org"
    cert_uri: str = "cert1.kms.example.org"
    issuer: str = "www.example.org"
    kms_id: str = "KMSProvider12345"
    token_issuer: str = "https://idms.example.org"
    user_key_period: int = 2592000
    user_key_offset: int = 0
    kms_domain_list: tuple[str, ...] = ("sec1.example.org", "sec2.example.org")
    kat: bool = False
    clock: datetime | None = None
    eccsi_fixed_v: int | None = None
    cache_num: int = 3
    request_window_s: int = 30
    user_id_encoding: str = "base64"
    cert_valid_from: str = "2000-01-01T00:00:00Z"
    cert_valid_to: str = "2099-12-31T23:59:59Z"
    protection: ProtectionPolicy = field(default_factory=ProtectionPolicy)
    users: tuple[UserConfig, ...] = ()
    partners: tuple[PartnerConfig, ...] = ()
    lookup: tuple[tuple[str, str], ...] = ()
    # The own certificate may be replaced during a run (refkms.certchange; serve
    # --cert-rotation): target.toml then claims PICS kms_cert_rotation.
    kms_cert_rotation: bool = False
    # How many of ``users`` are the pattern UEs of ``serve --users N`` (refkms/loadusers.py).
    load_users: int = 0


def load_config(path: Path | None) -> KmsConfig:
    """Read ``path`` (or nothing) and fill every missing key with its default."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    return config_from_mapping(raw)


def config_from_mapping(raw: dict[str, Any]) -> KmsConfig:
    defaults = KmsConfig()
    kms_uri = _str(raw, "kms_uri", defaults.kms_uri)
    users = tuple(_user(entry, i) for i, entry in enumerate(raw.get("users", [])))
    partners = tuple(_partner(entry, i) for i, entry in enumerate(raw.get("partners", [])))
    config = KmsConfig(
        kms_uri=kms_uri,
        cert_uri=_str(raw, "cert_uri", defaults.cert_uri),
        issuer=_str(raw, "issuer", defaults.issuer),
        kms_id=_str(raw, "kms_id", defaults.kms_id),
        token_issuer=_str(raw, "token_issuer", defaults.token_issuer),
        user_key_period=_int(raw, "user_key_period", defaults.user_key_period),
        user_key_offset=_int(raw, "user_key_offset", defaults.user_key_offset),
        kms_domain_list=tuple(raw.get("kms_domain_list", defaults.kms_domain_list)),
        kat=bool(raw.get("kat", defaults.kat)),
        kms_cert_rotation=bool(raw.get("kms_cert_rotation", defaults.kms_cert_rotation)),
        clock=_clock(raw.get("clock")),
        eccsi_fixed_v=_hex_int(raw.get("eccsi_fixed_v"), "eccsi_fixed_v"),
        cache_num=_int(raw, "cache_num", defaults.cache_num),
        request_window_s=_int(raw, "request_window_s", defaults.request_window_s),
        user_id_encoding=_choice(raw, "user_id_encoding", USER_ID_ENCODINGS),
        protection=_protection(raw.get("protection", {})),
        users=users or _default_users(),
        partners=partners or _default_partners(),
        lookup=(),
    )
    lookup = raw.get("lookup")
    table = dict(lookup) if isinstance(lookup, dict) else _default_lookup(config)
    return _replace_lookup(config, table)


def with_rotation(config: KmsConfig, *, trk: bool, ink: bool) -> KmsConfig:
    """``config`` with TrK and/or InK rotation switched on (``serve --rotate``)."""
    policy = replace(
        config.protection,
        rotate_trk=config.protection.rotate_trk or trk,
        rotate_ink=config.protection.rotate_ink or ink,
    )
    return replace(config, protection=policy)


def _default_users() -> tuple[UserConfig, ...]:
    # First: the UE under test, with an InK; second: the "another user" of the authz
    # cases; third: a user provisioned with a TrK only (DESIGN.md section 4).
    return (
        UserConfig("sip:alice@example.org", b"trk.1.alice@example.org", b"ink.1.alice@example.org"),
        UserConfig("sip:bob@example.org", b"trk.1.bob@example.org", b"ink.1.bob@example.org"),
        UserConfig("sip:carol@example.org", b"trk.1.carol@example.org", None),
    )


def _default_partners() -> tuple[PartnerConfig, ...]:
    return (
        PartnerConfig("kms.partner1.example.net", "cert1.kms.partner1.example.net"),
        PartnerConfig("kms.partner2.example.com", "cert1.kms.partner2.example.com"),
    )


def _default_lookup(config: KmsConfig) -> dict[str, str]:
    table = {user.uri: config.kms_uri for user in config.users}
    for i, partner in enumerate(config.partners, start=1):
        domain = partner.kms_uri.removeprefix("kms.")
        table[f"sip:user{i}@{domain}"] = partner.kms_uri
    return table


def _replace_lookup(config: KmsConfig, table: dict[str, str]) -> KmsConfig:
    entries = tuple((str(sip), str(kms)) for sip, kms in table.items())
    return replace(config, lookup=entries)


def _user(entry: Any, index: int) -> UserConfig:
    where = f"users[{index}]"
    if not isinstance(entry, dict) or "uri" not in entry:
        raise ConfigError(f"{where}: a table with at least 'uri'")
    uri = str(entry["uri"])
    local = uri.split(":", 1)[-1]
    trk_id = _b64(entry.get("trk_id"), f"{where}.trk_id") or f"trk.1.{local}".encode()
    ink_id = _b64(entry.get("ink_id"), f"{where}.ink_id")
    trk = _hex(entry.get("trk"), f"{where}.trk", 16)
    ink = _hex(entry.get("ink"), f"{where}.ink", 32)
    if ink is not None and ink_id is None:
        ink_id = f"ink.1.{local}".encode()
    return UserConfig(uri, trk_id, ink_id, trk, ink)


def _partner(entry: Any, index: int) -> PartnerConfig:
    if not isinstance(entry, dict) or "kms_uri" not in entry:
        raise ConfigError(f"partners[{index}]: a table with at least 'kms_uri'")
    kms_uri = str(entry["kms_uri"])
    return PartnerConfig(kms_uri, str(entry.get("cert_uri", f"cert1.{kms_uri}")))


def _protection(raw: Any) -> ProtectionPolicy:
    if not isinstance(raw, dict):
        raise ConfigError("protection: must be a table")
    return ProtectionPolicy(
        encryption=_choice(raw, "encryption", ENCRYPTION_POLICIES),
        signing=bool(raw.get("signing", True)),
        rotate_trk=bool(raw.get("rotate_trk", False)),
        rotate_ink=bool(raw.get("rotate_ink", False)),
    )


def _str(raw: dict[str, Any], key: str, default: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: expected a non-empty string, got {value!r}")
    return value


def _int(raw: dict[str, Any], key: str, default: int) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{key}: expected a non-negative integer, got {value!r}")
    return value


def _choice(raw: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = raw.get(key, allowed[0])
    if value not in allowed:
        raise ConfigError(f"{key}: expected one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def _clock(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"clock: not an ISO 8601 date-time: {value!r}") from exc


def _hex_int(value: Any, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value), 16)
    except ValueError as exc:
        raise ConfigError(f"{key}: expected hex digits, got {value!r}") from exc


def _b64(value: Any, key: str) -> bytes | None:
    if value is None:
        return None
    try:
        decoded = base64.b64decode(str(value), validate=True)
    except binascii.Error as exc:
        raise ConfigError(f"{key}: not base64: {value!r}") from exc
    if not 1 <= len(decoded) <= 64:
        raise ConfigError(f"{key}: a key ID has 1..64 octets, got {len(decoded)}")
    return decoded


def _hex(value: Any, key: str, length: int) -> bytes | None:
    if value is None:
        return None
    try:
        decoded = bytes.fromhex(str(value))
    except ValueError as exc:
        raise ConfigError(f"{key}: not hex: {value!r}") from exc
    if len(decoded) != length:
        raise ConfigError(f"{key}: expected {length} octets, got {len(decoded)}")
    return decoded
