"""Key-set checks: TS 33.180 D.3.3 (KmsKeySet), Annex F (UID), RFC 6507 and RFC 6508.

Each check looks at every ``KmsKeySet`` of the response's ``KmsKeyProv`` and reports the
first key set that breaks its rule. Keys are validated against the public keys of the
Root certificate from KMS Initialize (``CheckContext.init_certificate``).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from conformance.checks.base import (
    CheckContext,
    Finding,
    check,
    key_sets,
    ok,
    own_kms_uri,
    shorten,
    skipped,
    user_id_octets,
    version_problem,
    violation,
)
from conformance.checks.values import hex_octets, parse_datetime, parse_int
from conformance.checks.verify import Items, carries, verifies, versioned
from conformance.crypto import CryptoError, eccsi, periods, sakke, uid
from conformance.model.messages import (
    KEY_ELEMENTS,
    KMS_NS,
    XSI_NS,
    KeyContent,
    KmsKeyProv,
    KmsKeySet,
    QName,
)

MANDATORY_FIELDS = ("KmsUri", "UserUri", "UserID", "KeyPeriodNo")
KEY_CONTENT_TYPES = ("KeyContentType", "EncKeyContentType")
SSK_OCTETS = 32
PVT_OCTETS = 65
RSK_OCTETS = 257
LEGACY = " (legacy bug, kms-interface.md 14.3)"


# -- guards (used by @verifies, so defined before the checks) -----------------------


def _key_sets(ctx: CheckContext) -> list[KmsKeySet]:
    """The key sets of the response's KmsKeyProv, the items of the @_KEY_SETS checks."""
    return key_sets(ctx.response)


def _label(provisioned: Sequence[KmsKeySet], index: int, _: KmsKeySet) -> str:
    return f"key set {index}" if len(provisioned) > 1 else "key set"


_KEY_SETS = Items(_key_sets, _label, "key set")


def _period_parameters(ctx: CheckContext) -> tuple[int, int] | Finding:
    cert = ctx.init_certificate
    if cert is None:
        return skipped("no Root certificate from KMS Initialize (key period unknown)")
    period = parse_int(cert.get("UserKeyPeriod"))
    offset = parse_int(cert.get("UserKeyOffset"))
    if period is None or offset is None or period <= 0 or offset < 0:
        return skipped("the Root certificate's UserKeyPeriod/UserKeyOffset are unusable")
    return period, offset


def _certificate_key(ctx: CheckContext, name: str) -> bytes | Finding:
    cert = ctx.init_certificate
    if cert is None:
        return skipped(f"no Root certificate from KMS Initialize ({name} unknown)")
    value = hex_octets(cert.get(name) or "")
    if value is None:
        return skipped(f"the Root certificate's {name} is not usable hexBinary")
    return value


@check("keyprov.key-set-present")
@verifies(carries, KmsKeyProv)
def key_set_present(ctx: CheckContext, prov: KmsKeyProv) -> Finding:
    """KmsKeyProv carries at least one KmsKeySet."""
    if not prov.key_sets:
        return violation("KmsKeyProv carries no KmsKeySet", ">= 1 KmsKeySet", "0")
    return ok(f"{len(prov.key_sets)} key set(s) provisioned")


@check("keyset.mandatory-fields")
@_KEY_SETS.every("all mandatory fields present")
def mandatory_fields(ctx: CheckContext, key_set: KmsKeySet) -> str | None:
    """Every key set has KmsUri, UserUri, UserID, KeyPeriodNo and the three keys."""
    missing = [f for f in MANDATORY_FIELDS if f not in key_set.fields]
    missing += [k for k in KEY_ELEMENTS if k not in key_set.keys]
    return f"missing {', '.join(missing)}" if missing else None


@check("keyset.versions")
@verifies(versioned, KmsKeyProv, "1.0.0")
def versions(ctx: CheckContext, _: KmsKeyProv) -> Finding:
    """KmsKeyProv/@Version is 1.0.0 and KmsKeySet/@Version 1.1.0 (absent means the fixed value)."""
    wanted = ctx.profile.expected_versions.get("KmsKeySet", "1.1.0")
    rule = functools.partial(version_problem, wanted=wanted)
    return _KEY_SETS.judge(ctx, rule, "versions as fixed by the schema")


@check("keyset.kms-uri")
def kms_uri_matches_certificate(ctx: CheckContext) -> Finding:
    """Key-set KmsUri equals the KmsUri of the Root certificate."""
    cert_uri = own_kms_uri(ctx)
    if cert_uri is None:
        return skipped("no Root certificate from KMS Initialize (nor --kms-uri) to compare with")
    return _each_field_equals(ctx, "KmsUri", cert_uri)


@check("keyset.cert-uri")
def cert_uri_matches_certificate(ctx: CheckContext) -> Finding:
    """Key-set CertUri, when present, equals the Root certificate's CertUri."""
    if ctx.init_certificate is None:
        return skipped("no Root certificate from KMS Initialize to compare with")
    cert_uri = ctx.init_certificate.get("CertUri")

    def rule(key_set: KmsKeySet) -> str | None:
        value = key_set.get("CertUri")
        if value is None or value == cert_uri:
            return None
        return f"CertUri {shorten(value)} but the Root certificate has {shorten(cert_uri)}"

    return _KEY_SETS.judge(ctx, rule, "CertUri consistent with the Root certificate")


@check("keyset.user-uri")
def user_uri(ctx: CheckContext) -> Finding:
    """Key-set UserUri is the identity that was provisioned."""
    if ctx.expected_user_uri is None:
        return skipped("the case names no expected user identity")
    return _each_field_equals(ctx, "UserUri", ctx.expected_user_uri)


@check("keyset.key-period-current")
def key_period_current(ctx: CheckContext) -> Finding:
    """A plain keyprov provisions the key period of the request time (+-1 near a boundary)."""
    if ctx.request_instant is None:
        return skipped("no request time recorded")
    if ctx.requested_ntp is not None:
        # keyprov/<URI>/<NTP time> asks for the period of that time, not the current one.
        return skipped("the request named a time: judged by keyset.key-period-requested")
    parameters = _period_parameters(ctx)
    if isinstance(parameters, Finding):
        return parameters
    period, offset = parameters
    instant = ctx.request_instant
    current = periods.key_period_no(instant, period, offset)
    numbers = _period_numbers(ctx)
    if isinstance(numbers, Finding):
        return numbers
    if current in numbers:
        return ok(f"KeyPeriodNo {current} is the current period", str(current), str(numbers))
    near = {
        periods.key_period_no(periods.ntp_seconds(instant) + d, period, offset) for d in (-60, 60)
    }
    if near & set(numbers):
        return ok("KeyPeriodNo is the adjacent period at a period boundary", str(current))
    hint = _epoch_hint(instant, period, offset, numbers)
    return violation(
        f"no key set for the current key period {current}{hint}", str(current), str(numbers)
    )


@check("keyset.key-period-requested")
def key_period_requested(ctx: CheckContext) -> Finding:
    """A time-specific keyprov provisions the period containing that NTP time."""
    if ctx.requested_ntp is None:
        return skipped("the request named no time")
    parameters = _period_parameters(ctx)
    if isinstance(parameters, Finding):
        return parameters
    period, offset = parameters
    wanted = periods.key_period_no(ctx.requested_ntp, period, offset)
    numbers = _period_numbers(ctx)
    if isinstance(numbers, Finding):
        return numbers
    if wanted in numbers:
        return ok(f"KeyPeriodNo {wanted} for the requested time", str(wanted), str(numbers))
    return violation("no key set for the requested time's period", str(wanted), str(numbers))


@check("keyset.user-id-encoding")
def user_id_encoding(ctx: CheckContext) -> Finding:
    """UserID uses the profile's encoding (base64 by default; hex accepted per profile)."""
    accepted = ctx.profile.user_id_encodings
    preferred = ctx.params.get("user_id_encoding") or ctx.profile.user_id_encoding

    def rule(key_set: KmsKeySet) -> str | None:
        text = key_set.get("UserID")
        if text is None:
            return None
        kind = _user_id_kind(text)
        if kind is None:
            return f"UserID {shorten(text)} is neither 64 hex digits nor base64 of 32 octets"
        if kind not in accepted:
            return f"UserID is {kind}; the profile accepts {', '.join(accepted)}"
        if kind != preferred:
            return f"UserID is {kind}; the profile expects {preferred}"
        return None

    return _KEY_SETS.judge(ctx, rule, f"UserID encoded as {preferred}")


@check("keyset.uid")
@verifies(_period_parameters)
def uid_matches_annex_f(ctx: CheckContext, parameters: tuple[int, int]) -> Finding:
    """UserID is the Annex F UID of (UserUri, KmsUri, UserKeyPeriod, UserKeyOffset, KeyPeriodNo)."""
    period, offset = parameters

    def rule(key_set: KmsKeySet) -> str | None:
        got = _decoded_user_id(key_set)
        if isinstance(got, str):
            return got
        expected = _expected_uid(key_set, period, offset)
        if isinstance(expected, str):
            return expected
        if got == expected:
            return None
        diagnosis = _uid_diagnosis(key_set, got, period, offset)
        return f"UserID {got.hex()} is not the Annex F UID {expected.hex()}{diagnosis}"

    return _KEY_SETS.judge(ctx, rule, "UserID equals the Annex F UID")


@check("keyset.xsi-type")
@_KEY_SETS.every("key elements typed with xsi:type")
def key_xsi_type(ctx: CheckContext, key_set: KmsKeySet) -> str | None:
    """Key elements say their concrete type with xsi:type (KeyContentType or EncKeyContentType)."""
    strict = ctx.profile.require_xsi_type
    for name, content in key_set.keys.items():
        declared = content.xsi_type
        if declared is None:
            if strict:
                return f"{name} has no xsi:type (the schema type is abstract)"
            continue
        if declared.local not in KEY_CONTENT_TYPES or declared.namespace != _namespace(ctx):
            return _xsi_type_mismatch(name, content, declared, _namespace(ctx))
        wants_encrypted = content.encrypted_key is not None
        if (declared.local == "EncKeyContentType") != wants_encrypted:
            return f"{name} xsi:type {declared.local} does not match its content"
    return None


def _xsi_type_mismatch(name: str, content: KeyContent, declared: QName, namespace: str) -> str:
    """Why an xsi:type is not the schema's: its resolved QName and the binding that made it."""
    written = (content.attr(f"{{{XSI_NS}}}type") or "").strip()
    prefix, _, _local = written.rpartition(":")
    if prefix:
        binding = f"prefix {prefix!r} is bound to {_ns_text(declared.namespace)} on this element"
    else:
        binding = f"the default namespace is {_ns_text(declared.namespace)} on this element"
    wanted = " or ".join(f"{{{namespace}}}{t}" for t in KEY_CONTENT_TYPES)
    return (
        f"{name} has xsi:type {written!r}, which resolves to {_qname_text(declared)} "
        f"({binding}), not {wanted}"
    )


def _ns_text(namespace: str | None) -> str:
    return namespace if namespace else "none (no namespace)"


def _qname_text(qname: QName) -> str:
    return f"{{{qname.namespace}}}{qname.local}" if qname.namespace else f"{{}}{qname.local}"


@check("keyset.ssk-pvt-format")
@_KEY_SETS.every("SSK and PVT well formed")
def ssk_pvt_format(ctx: CheckContext, key_set: KmsKeySet) -> str | None:
    """SSK is 32 octets with 0 < SSK < q; PVT is a 65-octet point on P-256."""
    ssk = _key_octets(key_set, "UserSigningKeySSK")
    pvt = _key_octets(key_set, "UserPubTokenPVT")
    for value in (ssk, pvt):
        if isinstance(value, str):
            return value
    assert isinstance(ssk, bytes) and isinstance(pvt, bytes)
    if len(ssk) != SSK_OCTETS or not 0 < int.from_bytes(ssk, "big") < eccsi.Q:
        return f"UserSigningKeySSK is not a scalar in (0, q) of 32 octets ({len(ssk)} octets)"
    if not eccsi.validate_public_auth_key(pvt):
        return f"UserPubTokenPVT is not a P-256 point in 04||x||y form ({len(pvt)} octets)"
    return None


@check("keyset.eccsi")
@verifies(_certificate_key, "PubAuthKey")
def eccsi_keys_validate(ctx: CheckContext, kpak: bytes) -> Finding:
    """[SSK]G = KPAK + [HS]PVT with HS = SHA-256(G || KPAK || UID || PVT) and the raw UID."""

    def valid(identifier: bytes, ssk: bytes, pvt: bytes) -> bool:
        return _signing_keys_valid(kpak, identifier, ssk, pvt)

    failure = "ECCSI validation fails: [SSK]G != KPAK + [HS]PVT for the certificate's PubAuthKey"
    rule = _validation_rule(("UserSigningKeySSK", "UserPubTokenPVT"), valid, "ECCSI", failure)
    return _KEY_SETS.judge(ctx, rule, "SSK/PVT validate against PubAuthKey")


@check("keyset.rsk-format")
@_KEY_SETS.every("RSK is a point on the SAKKE curve")
def rsk_format(ctx: CheckContext, key_set: KmsKeySet) -> str | None:
    """UserDecryptKey is a 257-octet point on the SAKKE curve."""
    rsk = _key_octets(key_set, "UserDecryptKey")
    if isinstance(rsk, str):
        return rsk
    try:
        sakke.decode_point(rsk)
    except CryptoError as exc:
        return f"UserDecryptKey ({len(rsk)} octets) is not a SAKKE point: {exc}"
    return None


@check("keyset.sakke")
@verifies(_certificate_key, "PubEncKey")
def sakke_rsk_validates(ctx: CheckContext, z: bytes) -> Finding:
    """<RSK, [UID]P + Z_T> = g for the certificate's PubEncKey and the raw UID."""

    def valid(identifier: bytes, rsk: bytes) -> bool:
        return _rsk_valid(z, identifier, rsk)

    failure = "SAKKE RSK validation fails: <RSK, [UID]P + Z> != g for the certificate's PubEncKey"
    return _KEY_SETS.judge(
        ctx,
        _validation_rule(("UserDecryptKey",), valid, "RSK", failure),
        "RSK validates against PubEncKey",
    )


@check("keyset.validity")
@verifies(_period_parameters)
def validity_brackets_period(ctx: CheckContext, parameters: tuple[int, int]) -> Finding:
    """ValidFrom/ValidTo, when present, bracket the key period of KeyPeriodNo."""
    period, offset = parameters

    def rule(key_set: KmsKeySet) -> str | None:
        number = parse_int(key_set.get("KeyPeriodNo"))
        if number is None:
            return None
        start = periods.period_start(number, period, offset)
        end = periods.period_end(number, period, offset)
        valid_from = key_set.get("ValidFrom")
        valid_to = key_set.get("ValidTo")
        if valid_from is not None:
            parsed = parse_datetime(valid_from)
            if parsed is None:
                return f"ValidFrom {shorten(valid_from)} is not an xsd:dateTime"
            if parsed > start:
                return f"ValidFrom {valid_from} is after the period start {_iso(start)}"
        if valid_to is not None:
            parsed = parse_datetime(valid_to)
            if parsed is None:
                return f"ValidTo {shorten(valid_to)} is not an xsd:dateTime"
            if (end - parsed).total_seconds() > 1:
                return f"ValidTo {valid_to} is before the period end {_iso(end)}"
        return None

    return _KEY_SETS.judge(ctx, rule, "validity brackets the key period")


@check("keyset.not-revoked")
@_KEY_SETS.every("no key set revoked")
def not_revoked(ctx: CheckContext, key_set: KmsKeySet) -> str | None:
    """Revoked, when present, is false for a freshly provisioned key set."""
    value = key_set.get("Revoked")
    if value is None or value in ("false", "0"):
        return None
    return f"Revoked is {shorten(value)}"


# -- helpers ----------------------------------------------------------------------------


def _namespace(ctx: CheckContext) -> str:
    return ctx.response.namespace if ctx.response else KMS_NS


def _each_field_equals(ctx: CheckContext, name: str, expected: str) -> Finding:
    def rule(key_set: KmsKeySet) -> str | None:
        value = key_set.get(name)
        if value is None or value == expected:
            return None
        return f"{name} is {shorten(value)}, expected {shorten(expected)}"

    return replace(_KEY_SETS.judge(ctx, rule, f"{name} is {expected}"), expected=expected)


def _period_numbers(ctx: CheckContext) -> list[int] | Finding:
    provisioned = _key_sets(ctx)
    if not provisioned:
        return skipped("no key set to check")
    numbers = [parse_int(k.get("KeyPeriodNo")) for k in provisioned]
    if any(n is None for n in numbers):
        return violation("KeyPeriodNo missing or not an integer", "integer", str(numbers))
    return [n for n in numbers if n is not None]


def _epoch_hint(instant: datetime, period: int, offset: int, numbers: list[int]) -> str:
    unix_period = (periods.ntp_seconds(instant) - periods.NTP_UNIX_OFFSET - offset) // period
    if unix_period in numbers:
        return " (the KMS counts periods from the Unix epoch, not from NTP 1900)"
    return ""


def _user_id_kind(text: str) -> str | None:
    compact = "".join(text.split())
    try:
        uid.decode_user_id(compact)
    except CryptoError:
        return None
    return "hex" if len(compact) == 64 else "base64"


def _decoded_user_id(key_set: KmsKeySet) -> bytes | str:
    text = key_set.get("UserID")
    if text is None:
        return "UserID missing"
    decoded = user_id_octets(key_set)
    if decoded is None:
        return f"UserID {shorten(text)} is neither 64 hex digits nor base64 of 32 octets"
    return decoded


def _expected_uid(key_set: KmsKeySet, period: int, offset: int) -> bytes | str:
    user = key_set.get("UserUri")
    kms = key_set.get("KmsUri")
    number = parse_int(key_set.get("KeyPeriodNo"))
    if user is None or kms is None or number is None:
        return "UserUri, KmsUri or KeyPeriodNo missing, so the UID cannot be computed"
    try:
        return uid.mikey_sakke_uid(user, kms, period, offset, number)
    except CryptoError as exc:
        return f"UID cannot be computed: {exc}"


def _uid_diagnosis(key_set: KmsKeySet, got: bytes, period: int, offset: int) -> str:
    user = key_set.get("UserUri") or ""
    kms = key_set.get("KmsUri") or ""
    number = parse_int(key_set.get("KeyPeriodNo")) or 0
    try:
        s = uid.uid_kdf_input(user, kms, period, offset, number)
    except CryptoError:
        return ""
    if hashlib.sha256(b"0" + s[1:]).digest() == got:
        return " (S starts with ASCII '0' instead of octet 0x00)"
    return ""


def _key_octets(key_set: KmsKeySet, name: str) -> bytes | str:
    content = key_set.keys.get(name)
    if content is None:
        return f"{name} missing"
    if content.plaintext is not None:
        return content.plaintext
    if content.encrypted_key is not None:
        return f"{name} is encrypted and was not unwrapped (no TrK, or unwrap failed)"
    octets = hex_octets(content.text)
    if octets is None:
        return f"{name} is not hexBinary ({shorten(content.text, 40)})"
    return octets


def _key_material(key_set: KmsKeySet, *names: str) -> tuple[bytes, tuple[bytes, ...]] | str:
    identifier = _decoded_user_id(key_set)
    if isinstance(identifier, str):
        return identifier
    values = []
    for name in names:
        value = _key_octets(key_set, name)
        if isinstance(value, str):
            return value
        values.append(value)
    return identifier, tuple(values)


def _validation_rule(
    names: tuple[str, ...], valid: Callable[..., bool], what: str, failure: str
) -> Callable[[KmsKeySet], str | None]:
    """A key set's keys ``names`` validate with the raw UID; the ASCII-hex UID is the
    legacy bug, named as such (kms-interface.md 14.3)."""

    def rule(key_set: KmsKeySet) -> str | None:
        material = _key_material(key_set, *names)
        if isinstance(material, str):
            return material
        identifier, keys = material
        if valid(identifier, *keys):
            return None
        if valid(identifier.hex().encode("ascii"), *keys):
            legacy = "fails with the raw UID; it passes with the ASCII-hex UID" + LEGACY
            return f"{what} validation {legacy}"
        return failure

    return rule


@functools.lru_cache(maxsize=4096)
def _signing_keys_valid(kpak: bytes, identifier: bytes, ssk: bytes, pvt: bytes) -> bool:
    return eccsi.validate_signing_keys(kpak, identifier, ssk, pvt)


@functools.lru_cache(maxsize=4096)
def _rsk_valid(z: bytes, identifier: bytes, rsk: bytes) -> bool:
    return sakke.validate_rsk(z, identifier, rsk)


def _iso(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")
