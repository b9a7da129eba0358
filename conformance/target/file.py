"""The target description: PICS (what the KMS claims) and PIXIT (what the tester knows).

One TOML file (DESIGN.md section 4). Every problem is a ``TargetFileError`` naming the
file, the key and the problem in one line; the CLI turns it into exit status 2. Secrets
(tokens, TrK, InK) may come from environment variables or a command, and are held in
``Secret`` so that a stray ``repr`` or log line cannot print them. The typed value readers
and the value types (``TargetFileError``, ``Secret``, ``SymmetricKey``) are in
values.py and re-exported here.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.core.limits import DEFAULT_LIMITS, Limits, read_limits
from conformance.target.values import (
    Secret,
    SymmetricKey,
    TargetFileError,
    ValueReader,
    kind_of,
)

__all__ = [
    "ENCRYPTION_MODES",
    "HeaderValue",
    "LookupEntry",
    "NegativeTokens",
    "Pics",
    "Pixit",
    "ProfileSettings",
    "Secret",
    "SymmetricKey",
    "Target",
    "TargetFileError",
    "TargetSettings",
    "User",
    "load_target",
]

ENCRYPTION_MODES = ("none", "message", "keys")
# Header names: letters, digits, "-" and "_" (a subset of RFC 9110 tokens without the
# characters a shell would read inside the double quotes of repro.sh).
_HEADER_NAME = re.compile(r"^[0-9A-Za-z_-]+$")
# Headers the probe sets itself, per request, and that a target file may not fix.
_OWN_HEADERS = frozenset({"authorization", "content-type", "content-length", "host"})


@dataclass(frozen=True)
class HeaderValue:
    """A fixed request header from the target file; ``secret`` ones are redacted."""

    name: str
    value: Secret
    secret: bool = False


@dataclass(frozen=True)
class TargetSettings:
    base_url: str
    verify_tls: bool = True
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    timeout_s: float = 10.0
    max_body_bytes: int = 4 * 1024 * 1024
    # How the KMS learns who is asking besides a Bearer token (issue 11): an identity
    # header set by a trusted proxy (value: the user's identity, default its URI), fixed
    # headers, and the passphrase of client_key.
    identity_header: str | None = None
    headers: tuple[HeaderValue, ...] = ()
    client_key_passphrase: Secret | None = None


@dataclass(frozen=True)
class ProfileSettings:
    release: str = "ts33180-r17"
    user_id_encoding: str | None = None
    token_scope: str | None = None


@dataclass(frozen=True)
class Pics:
    """What the KMS claims to support; a case whose PICS condition is false is n/a."""

    cert: bool = True
    lookup: bool = False
    redirect: bool = False
    encryption: str = "none"
    signing: bool = False
    ink: bool = False
    request_signing: bool = False
    certcache_incremental: bool = False
    tk_ik_delivery: bool = False
    # Stateful scenarios (issue 12): the KMS delivers a new TrK / InK in init and keyprov
    # (D.3.1 "may"), or can have its own certificate replaced during a run.
    trk_rotation: bool = False
    ink_rotation: bool = False
    kms_cert_rotation: bool = False

    def as_dict(self) -> dict[str, bool | str]:
        return {name: getattr(self, name) for name in _PICS_TYPES}


@dataclass(frozen=True)
class User:
    uri: str
    token: Secret | None
    trk: SymmetricKey | None = None
    ink: SymmetricKey | None = None
    identity: str | None = None  # the identity header's value (default: uri)
    headers: tuple[HeaderValue, ...] = ()
    client_cert: Path | None = None
    client_key: Path | None = None
    client_key_passphrase: Secret | None = None


@dataclass(frozen=True)
class LookupEntry:
    sip_uri: str
    kms_uri: str


@dataclass(frozen=True)
class Pixit:
    kms_uri: str | None = None
    cert_uri: str | None = None
    partner_kms_uris: tuple[str, ...] = ()
    unknown_kms_uri: str = "kms.unknown.invalid"
    lookup: tuple[LookupEntry, ...] = ()
    unknown_sip_uri: str = "sip:nobody@unknown.invalid"
    # A shell command that makes the KMS replace its own certificate (argument "replace")
    # and put the original back (argument "restore"); conformance/run/control.py runs it.
    kms_cert_rotation_command: str | None = None


@dataclass(frozen=True)
class NegativeTokens:
    expired: Secret | None = None
    wrong_scope: Secret | None = None
    malformed: Secret | None = None
    bad_signature: Secret | None = None


@dataclass(frozen=True)
class Target:
    path: Path
    target: TargetSettings
    profile: ProfileSettings
    pics: Pics
    pixit: Pixit
    users: tuple[User, ...]
    tokens: NegativeTokens
    allowed_skew_s: float = 300.0
    extra: Mapping[str, Any] = field(default_factory=dict)
    limits: Limits = DEFAULT_LIMITS  # the [limits] table (conformance/core/limits.py)

    @property
    def user(self) -> User:
        """The UE under test: the first user."""
        return self.users[0]

    @property
    def bearer(self) -> bool:
        """Whether the KMS is given Bearer tokens (else it knows users by identity header
        or client certificate, and the token cases do not apply)."""
        return any(u.token is not None for u in self.users)

    def public_summary(self) -> dict[str, Any]:
        """What a report may show about the target: no tokens, no keys."""
        return {
            "file": str(self.path),
            "base_url": self.target.base_url,
            "verify_tls": self.target.verify_tls,
            "profile": self.profile.release,
            "pics": self.pics.as_dict(),
            "users": [
                {
                    "uri": u.uri,
                    "trk_id": u.trk.key_id_b64 if u.trk else None,
                    "ink_id": u.ink.key_id_b64 if u.ink else None,
                }
                for u in self.users
            ],
        }


def load_target(path: Path | str, environ: Mapping[str, str] | None = None) -> Target:
    """Read and check a target file; raise ``TargetFileError`` on any problem."""
    file = Path(path)
    env = os.environ if environ is None else environ
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise TargetFileError(file, "", f"cannot read the file ({exc.strerror})") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise TargetFileError(file, "", "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise TargetFileError(file, "", f"not valid TOML ({exc})") from None
    return _Reader(file, env).target(doc)


class _Reader(ValueReader):
    """Reads the tables of a target file into a ``Target``."""

    def target(self, doc: dict[str, Any]) -> Target:
        self.only(
            doc,
            "",
            {"target", "profile", "pics", "pixit", "users", "keys", "tokens", "clock", "limits"}
            | {"user_pattern"},
        )
        settings = self.target_settings(self.table(doc, "target", required=True))
        profile = self.profile(self.table(doc, "profile"))
        pics = self.pics(self.table(doc, "pics"))
        pixit = self.pixit(self.table(doc, "pixit"))
        keys = self.table(doc, "keys")
        self.only(keys, "keys", {"trk_id", "trk", "trk_env", "ink_id", "ink", "ink_env"})
        users = self.users(doc.get("users"), keys)
        tokens = self.tokens(self.table(doc, "tokens"))
        clock = self.table(doc, "clock")
        self.only(clock, "clock", {"allowed_skew_s"})
        skew = self.number(clock, "clock", "allowed_skew_s", 300.0)
        if pics.encryption not in ENCRYPTION_MODES:
            raise self.fail(
                "pics.encryption",
                f"'{pics.encryption}' is not one of {', '.join(ENCRYPTION_MODES)}",
            )
        limits = read_limits(self.table(doc, "limits"), self.fail)
        extra = self.user_pattern(doc)
        return Target(
            self.path, settings, profile, pics, pixit, users, tokens, skew, extra, limits=limits
        )

    def user_pattern(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``[user_pattern]``, the many UEs of a load run (conformance/load/users.py)."""
        if "user_pattern" not in doc:
            return {}
        from conformance.load.users import UserPatternError, parse_user_pattern

        try:
            return {"user_pattern": parse_user_pattern(doc["user_pattern"], self.path.parent)}
        except UserPatternError as exc:
            raise self.fail(exc.key, exc.problem) from None

    # -- sections ----------------------------------------------------------------

    def target_settings(self, t: dict[str, Any]) -> TargetSettings:
        self.only(
            t,
            "target",
            {
                "base_url",
                "verify_tls",
                "ca_file",
                "client_cert",
                "client_key",
                "client_key_passphrase_env",
                "timeout_s",
                "max_body_bytes",
                "identity_header",
                "headers",
            },
        )
        base_url = self.string(t, "target", "base_url", required=True)
        assert base_url is not None
        if not base_url.startswith(("https://", "http://")):
            raise self.fail("target.base_url", f"'{base_url}' is not an http(s) URL")
        timeout = self.number(t, "target", "timeout_s", 10.0)
        if timeout <= 0:
            raise self.fail("target.timeout_s", "must be a positive number of seconds")
        max_body = self.integer(t, "target", "max_body_bytes", 4 * 1024 * 1024)
        if max_body <= 0:
            raise self.fail("target.max_body_bytes", "must be a positive integer")
        identity_header = self.string(t, "target", "identity_header")
        if identity_header is not None:
            self.header_name("target.identity_header", identity_header)
        return TargetSettings(
            base_url=base_url.rstrip("/"),
            verify_tls=self.boolean(t, "target", "verify_tls", True),
            ca_file=self.existing_file(t, "target", "ca_file"),
            client_cert=self.existing_file(t, "target", "client_cert"),
            client_key=self.existing_file(t, "target", "client_key"),
            timeout_s=timeout,
            max_body_bytes=max_body,
            identity_header=identity_header,
            headers=self.headers(t, "target"),
            client_key_passphrase=self.passphrase(t, "target"),
        )

    def profile(self, t: dict[str, Any]) -> ProfileSettings:
        self.only(t, "profile", {"release", "user_id_encoding", "token_scope"})
        encoding = self.string(t, "profile", "user_id_encoding")
        if encoding is not None and encoding not in ("base64", "hex"):
            raise self.fail("profile.user_id_encoding", f"'{encoding}' is not base64 or hex")
        return ProfileSettings(
            release=self.string(t, "profile", "release") or "ts33180-r17",
            user_id_encoding=encoding,
            token_scope=self.string(t, "profile", "token_scope"),
        )

    def pics(self, t: dict[str, Any]) -> Pics:
        self.only(t, "pics", set(_PICS_TYPES))
        values: dict[str, Any] = {}
        for name, kind in _PICS_TYPES.items():
            if name in t:
                values[name] = (
                    self.string(t, "pics", name)
                    if kind is str
                    else self.boolean(t, "pics", name, False)
                )
        return Pics(**values)

    def pixit(self, t: dict[str, Any]) -> Pixit:
        self.only(
            t,
            "pixit",
            {
                "kms_uri",
                "cert_uri",
                "partner_kms_uris",
                "unknown_kms_uri",
                "lookup",
                "unknown_sip_uri",
                "kms_cert_rotation_command",
            },
        )
        lookup = []
        raw_lookup = t.get("lookup", [])
        if not isinstance(raw_lookup, list):
            raise self.fail("pixit.lookup", "must be an array of {sip_uri, kms_uri} tables")
        for i, entry in enumerate(raw_lookup):
            key = f"pixit.lookup[{i}]"
            if not isinstance(entry, dict):
                raise self.fail(key, "must be a table with sip_uri and kms_uri")
            self.only(entry, key, {"sip_uri", "kms_uri"})
            sip = self.string(entry, key, "sip_uri", required=True)
            kms = self.string(entry, key, "kms_uri", required=True)
            assert sip is not None and kms is not None
            lookup.append(LookupEntry(sip, kms))
        partners = t.get("partner_kms_uris", [])
        if not isinstance(partners, list) or not all(isinstance(p, str) for p in partners):
            raise self.fail("pixit.partner_kms_uris", "must be an array of strings")
        return Pixit(
            kms_uri=self.string(t, "pixit", "kms_uri"),
            cert_uri=self.string(t, "pixit", "cert_uri"),
            partner_kms_uris=tuple(partners),
            unknown_kms_uri=self.string(t, "pixit", "unknown_kms_uri") or Pixit.unknown_kms_uri,
            lookup=tuple(lookup),
            unknown_sip_uri=self.string(t, "pixit", "unknown_sip_uri") or Pixit.unknown_sip_uri,
            kms_cert_rotation_command=self.string(t, "pixit", "kms_cert_rotation_command"),
        )

    def users(self, raw: Any, keys: dict[str, Any]) -> tuple[User, ...]:
        if raw is None:
            raise self.fail(
                "users", "missing: give at least one [[users]] entry with uri and token"
            )
        if not isinstance(raw, list) or not raw:
            raise self.fail("users", "must be a non-empty array of [[users]] tables")
        users = []
        for i, entry in enumerate(raw):
            key = f"users[{i}]"
            if not isinstance(entry, dict):
                raise self.fail(key, "must be a table")
            self.only(
                entry,
                key,
                {
                    "uri",
                    "token",
                    "token_env",
                    "token_command",
                    "trk_id",
                    "trk",
                    "trk_env",
                    "ink_id",
                    "ink",
                    "ink_env",
                    "identity",
                    "headers",
                    "client_cert",
                    "client_key",
                    "client_key_passphrase_env",
                },
            )
            uri = self.string(entry, key, "uri", required=True)
            assert uri is not None
            token = self.secret_text(entry, key, "token")
            # [keys] describes the UE under test: it fills in what the first user leaves out.
            source = {**keys, **entry} if i == 0 else entry
            users.append(
                User(
                    uri=uri,
                    token=token,
                    trk=self.symmetric_key(source, key, "trk"),
                    ink=self.symmetric_key(source, key, "ink"),
                    identity=self.string(entry, key, "identity"),
                    headers=self.headers(entry, key),
                    client_cert=self.existing_file(entry, key, "client_cert"),
                    client_key=self.existing_file(entry, key, "client_key"),
                    client_key_passphrase=self.passphrase(entry, key),
                )
            )
        return tuple(users)

    # -- authentication besides Bearer tokens ---------------------------------------

    def headers(self, t: dict[str, Any], where: str) -> tuple[HeaderValue, ...]:
        """``headers = { Name = "value", Other = { value_env = "VAR" } }``: a plain string
        is sent as is; a table gives the value by ``value``, ``value_env`` or
        ``value_command`` (as tokens are) and is a secret unless ``secret = false``."""
        table = t.get("headers", {})
        if not isinstance(table, dict):
            raise self.fail(f"{where}.headers", "must be a table of header name = value")
        found = []
        for name, spec in table.items():
            key = f"{where}.headers.{name}"
            self.header_name(key, name)
            if isinstance(spec, str):
                found.append(HeaderValue(name, Secret(spec.encode("utf-8")), secret=False))
                continue
            if not isinstance(spec, dict):
                raise self.fail(key, f"must be a string or a table, not {kind_of(spec)}")
            self.only(spec, key, {"value", "value_env", "value_command", "secret"})
            value = self.secret_source(spec, key, "value")
            if value is None:
                raise self.fail(key, "give one of value, value_env, value_command")
            secret = self.boolean(spec, key, "secret", True)
            found.append(HeaderValue(name, Secret(value.strip().encode("utf-8")), secret))
        return tuple(found)

    def header_name(self, key: str, name: str) -> None:
        if not _HEADER_NAME.match(name):
            raise self.fail(key, f"{name!r} is not an HTTP header name")
        if name.lower() in _OWN_HEADERS:
            raise self.fail(key, f"{name} is set by the probe itself (tokens go in token)")

    def passphrase(self, t: dict[str, Any], where: str) -> Secret | None:
        var = self.string(t, where, "client_key_passphrase_env")
        if var is None:
            return None
        if var not in self.env:
            raise self.fail(
                f"{where}.client_key_passphrase_env", f"environment variable {var} is not set"
            )
        return Secret(self.env[var].encode("utf-8"))

    def tokens(self, t: dict[str, Any]) -> NegativeTokens:
        names = ("expired", "wrong_scope", "malformed", "bad_signature")
        allowed = {n + suffix for n in names for suffix in ("", "_env", "_command")}
        self.only(t, "tokens", allowed)
        found = {n: self.secret_text(t, "tokens", n) for n in names}
        return NegativeTokens(**found)


_PICS_TYPES: dict[str, type] = {
    "cert": bool,
    "lookup": bool,
    "redirect": bool,
    "encryption": str,
    "signing": bool,
    "ink": bool,
    "request_signing": bool,
    "certcache_incremental": bool,
    "tk_ik_delivery": bool,
    "trk_rotation": bool,
    "ink_rotation": bool,
    "kms_cert_rotation": bool,
}
