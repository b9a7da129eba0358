"""KMS certificate checks: TS 33.180 D.3.1 (KmsInit, KmsCertCache) and D.3.2.2.

Init checks look at the Root certificate in ``KmsInit``; cache checks at every
certificate of ``KmsCertCache``. Public keys are validated with RFC 6507 / RFC 6508.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from conformance.checks.base import (
    CheckContext,
    Finding,
    check,
    first_violation,
    message_content,
    ok,
    own_kms_uri,
    shorten,
    skipped,
    violation,
)
from conformance.checks.values import hex_octets, parse_boolean, parse_datetime, parse_int
from conformance.checks.verify import carries, content_of, verifies
from conformance.crypto import eccsi, sakke
from conformance.model import KmsCertCache, KmsCertificate, KmsInit

MANDATORY_FIELDS = (
    "KmsUri",
    "UserIdFormat",
    "UserKeyPeriod",
    "UserKeyOffset",
    "PubEncKey",
    "PubAuthKey",
)


@check("init.one-certificate")
@verifies(carries, KmsInit)
def init_has_one_certificate(ctx: CheckContext, init: KmsInit) -> Finding:
    """KmsInit carries exactly one (Signed)KmsCertificate: the KMS's own."""
    count = len(init.certificates)
    if count != 1:
        return violation(f"KmsInit carries {count} certificates", "1", str(count))
    return ok("one certificate in KmsInit")


@check("init.role-root")
def init_role_root(ctx: CheckContext) -> Finding:
    """The certificate in KmsInit has Role="Root"."""
    cert = _root(ctx)
    if cert is None:
        return skipped("no certificate in KmsInit")
    if cert.role != "Root":
        return violation("the KMS's own certificate is not marked Root", "Root", shorten(cert.role))
    return ok("Role is Root")


@check("certificate.mandatory-fields")
def mandatory_fields(ctx: CheckContext) -> Finding:
    """KmsUri, UserIdFormat, UserKeyPeriod, UserKeyOffset, PubEncKey, PubAuthKey present."""

    def rule(cert: KmsCertificate) -> str | None:
        missing = [f for f in MANDATORY_FIELDS if f not in cert.fields]
        return f"missing {', '.join(missing)}" if missing else None

    return _each(ctx, rule, "mandatory certificate fields present")


@check("certificate.pub-enc-key")
def pub_enc_key(ctx: CheckContext) -> Finding:
    """PubEncKey is a SAKKE point 04||x||y on the curve, of order q, not infinity."""

    rule = _public_key_rule("PubEncKey", _pub_enc_key_valid, "a SAKKE point of order q")
    return _each(ctx, rule, "PubEncKey valid")


@check("certificate.pub-auth-key")
def pub_auth_key(ctx: CheckContext) -> Finding:
    """PubAuthKey is a P-256 point 04||x||y on the curve, not infinity."""

    return _each(
        ctx,
        _public_key_rule("PubAuthKey", _pub_auth_key_valid, "a P-256 point"),
        "PubAuthKey valid",
    )


@check("certificate.parameter-set")
def parameter_set(ctx: CheckContext) -> Finding:
    """ParameterSet, when present, is 1 (the only defined SAKKE parameter set)."""
    return _each(ctx, _integer_if_present("ParameterSet", 1), "ParameterSet 1 or absent")


@check("certificate.user-id-format")
def user_id_format(ctx: CheckContext) -> Finding:
    """UserIdFormat names the Annex F MIKEY-SAKKE UID scheme (2)."""
    return _each(ctx, _integer_if_present("UserIdFormat", 2), "UserIdFormat 2")


@check("certificate.key-period")
def key_period(ctx: CheckContext) -> Finding:
    """UserKeyPeriod > 0 and 0 <= UserKeyOffset < UserKeyPeriod."""

    def rule(cert: KmsCertificate) -> str | None:
        period = parse_int(cert.get("UserKeyPeriod"))
        offset = parse_int(cert.get("UserKeyOffset"))
        if period is None or offset is None:
            return "UserKeyPeriod or UserKeyOffset is not an integer"
        if period <= 0:
            return f"UserKeyPeriod {period} is not positive"
        if not 0 <= offset < period:
            return f"UserKeyOffset {offset} is not in [0, UserKeyPeriod {period})"
        return None

    return _each(ctx, rule, "key period parameters consistent")


@check("certificate.validity")
def validity(ctx: CheckContext) -> Finding:
    """Now lies within ValidFrom/ValidTo, and Revoked is not true."""

    def rule(cert: KmsCertificate) -> str | None:
        for name in ("ValidFrom", "ValidTo"):
            text = cert.get(name)
            if text is not None and parse_datetime(text) is None:
                return f"{name} {shorten(text)} is not an xsd:dateTime"
        valid_from = parse_datetime(cert.get("ValidFrom"))
        valid_to = parse_datetime(cert.get("ValidTo"))
        if valid_from is not None and ctx.now < valid_from:
            return f"not yet valid: ValidFrom {cert.get('ValidFrom')}"
        if valid_to is not None and ctx.now > valid_to:
            return f"expired: ValidTo {cert.get('ValidTo')}"
        if parse_boolean(cert.get("Revoked")):
            return "Revoked is true"
        return None

    return _each(ctx, rule, "certificate current and not revoked")


@check("certificate.version")
def version(ctx: CheckContext) -> Finding:
    """KmsCertificate/@Version is the profile's version (examples 1.1.0)."""
    wanted = ctx.profile.expected_versions.get("KmsCertificate")
    if wanted is None:
        return skipped("the profile fixes no KmsCertificate version")

    def rule(cert: KmsCertificate) -> str | None:
        value = cert.attr("Version")
        return None if value in (None, wanted) else f"Version {value}, expected {wanted}"

    return _each(ctx, rule, f"Version {wanted}")


@check("certcache.present")
@verifies(carries, KmsCertCache)
def cert_cache_present(ctx: CheckContext, cache: KmsCertCache) -> Finding:
    """The response carries a KmsCertCache."""
    return ok(f"KmsCertCache with {len(cache.certificates)} certificate(s)")


@check("certcache.attributes")
@verifies(content_of, KmsCertCache)
def cert_cache_attributes(ctx: CheckContext, cache: KmsCertCache) -> Finding:
    """KmsCertCache/@Version is 1.0.0; @CacheNum, if present, is an integer."""
    wanted = ctx.profile.expected_versions.get("KmsCertCache", "1.0.0")
    got = cache.attr("Version")
    if got is not None and got != wanted:
        return violation("KmsCertCache has the wrong Version", wanted, got)
    number = cache.attr("CacheNum")
    if number is not None and parse_int(number) is None:
        return violation("CacheNum is not an integer", "xsd:integer", shorten(number))
    return ok("KmsCertCache attributes valid")


@check("certcache.role-external")
def role_external(ctx: CheckContext) -> Finding:
    """Partner-domain certificates in the cache carry Role="External"."""
    cache = message_content(ctx, KmsCertCache)
    if cache is None or not cache.certificates:
        return skipped("no cached certificate")
    # The KMS's own certificate may sit in its cache with Role Root: without the init
    # response, the KmsUri the response itself names is the one that is not a partner.
    own = own_kms_uri(ctx) or (ctx.raw.get("KmsUri") if ctx.raw else None)
    for cert in cache.certificates:
        if cert.kms_uri != own and cert.role not in (None, "External"):
            return violation(
                f"partner certificate {shorten(cert.kms_uri)} has Role {cert.role}",
                "External",
                shorten(cert.role),
            )
    return ok("partner certificates are External")


@check("cert.requested")
@verifies(carries, KmsCertCache)
def cert_is_the_requested_one(ctx: CheckContext, cache: KmsCertCache) -> Finding:
    """KMS Cert returns exactly one certificate, the one for the requested KMS URI."""
    wanted = ctx.params.get("requested_kms_uri")
    if wanted is None:
        return skipped("the case names no requested KMS URI")
    got = [c.kms_uri for c in cache.certificates]
    if got != [wanted]:
        return violation(
            "KMS Cert did not return the requested certificate alone", wanted, str(got)
        )
    return ok(f"the certificate of {wanted}")


# -- helpers ----------------------------------------------------------------------------


def _root(ctx: CheckContext) -> KmsCertificate | None:
    init = message_content(ctx, KmsInit)
    return init.certificates[0] if init and init.certificates else None


def _certificates(ctx: CheckContext) -> list[KmsCertificate]:
    init = message_content(ctx, KmsInit)
    if init is not None:
        return init.certificates[:1]
    cache = message_content(ctx, KmsCertCache)
    return list(cache.certificates) if cache is not None else []


def _each(ctx: CheckContext, rule: Callable[[KmsCertificate], str | None], summary: str) -> Finding:
    def label(_: int, cert: KmsCertificate) -> str:
        return f"certificate {shorten(cert.kms_uri, 40)}"

    return first_violation(_certificates(ctx), rule, label, "certificate", summary)


def _integer_if_present(name: str, wanted: int) -> Callable[[KmsCertificate], str | None]:
    """The rule of an optional field that, when present, is the integer ``wanted``."""

    def rule(cert: KmsCertificate) -> str | None:
        value = cert.get(name)
        if value is None or parse_int(value) == wanted:
            return None
        return f"{name} is {shorten(value)}, expected {wanted}"

    return rule


def _public_key_rule(
    name: str, valid: Callable[[bytes], bool], kind: str
) -> Callable[[KmsCertificate], str | None]:
    """The rule of a certificate's public key field: hexBinary octets that are ``kind``."""

    def rule(cert: KmsCertificate) -> str | None:
        value = hex_octets(cert.get(name))
        if value is None:
            return f"{name} is not hexBinary ({shorten(cert.get(name), 40)})"
        if not valid(value):
            return f"{name} ({len(value)} octets) is not {kind}"
        return None

    return rule


# A certificate cache repeats the keys of a KMS across its certificates (and a run sees the
# Root certificate in every init): each distinct key octet string is validated once.
@functools.lru_cache(maxsize=1024)
def _pub_enc_key_valid(value: bytes) -> bool:
    return sakke.validate_public_key(value)


@functools.lru_cache(maxsize=1024)
def _pub_auth_key_valid(value: bytes) -> bool:
    return eccsi.validate_public_auth_key(value)
