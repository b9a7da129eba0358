"""KMS certificate checks: TS 33.180 D.3.1 (KmsInit, KmsCertCache) and D.3.2.2.

Init checks look at the Root certificate in ``KmsInit``; cache checks at every
certificate of ``KmsCertCache``. Public keys are validated with RFC 6507 / RFC 6508.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from conformance.checks.base import (
    CheckContext,
    Finding,
    check,
    message_content,
    ok,
    own_kms_uri,
    root_certificate,
    shorten,
    skipped,
    version_problem,
    violation,
)
from conformance.checks.values import hex_octets, parse_boolean, parse_datetime, parse_int
from conformance.checks.verify import Items, carries, verifies, versioned
from conformance.crypto import eccsi, sakke
from conformance.model.messages import KmsCertCache, KmsCertificate, KmsInit

MANDATORY_FIELDS = (
    "KmsUri",
    "UserIdFormat",
    "UserKeyPeriod",
    "UserKeyOffset",
    "PubEncKey",
    "PubAuthKey",
)


# -- the certificates checked one by one (used by the @_CERTIFICATES.every checks) -------


def _certificates(ctx: CheckContext) -> list[KmsCertificate]:
    """The Root certificate of a KmsInit, or every certificate of a KmsCertCache."""
    root = root_certificate(ctx.response)
    if root is not None:
        return [root]
    cache = message_content(ctx, KmsCertCache)
    return list(cache.certificates) if cache is not None else []


def _label(_: Sequence[KmsCertificate], __: int, cert: KmsCertificate) -> str:
    return f"certificate {shorten(cert.kms_uri, 40)}"


_CERTIFICATES = Items(_certificates, _label, "certificate")


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
    cert = root_certificate(ctx.response)
    if cert is None:
        return skipped("no certificate in KmsInit")
    if cert.role != "Root":
        return violation("the KMS's own certificate is not marked Root", "Root", shorten(cert.role))
    return ok("Role is Root")


@check("certificate.mandatory-fields")
@_CERTIFICATES.every("mandatory certificate fields present")
def mandatory_fields(ctx: CheckContext, cert: KmsCertificate) -> str | None:
    """KmsUri, UserIdFormat, UserKeyPeriod, UserKeyOffset, PubEncKey, PubAuthKey present."""
    missing = [f for f in MANDATORY_FIELDS if f not in cert.fields]
    return f"missing {', '.join(missing)}" if missing else None


@check("certificate.pub-enc-key")
def pub_enc_key(ctx: CheckContext) -> Finding:
    """PubEncKey is a SAKKE point 04||x||y on the curve, of order q, not infinity."""

    rule = _public_key_rule("PubEncKey", _pub_enc_key_valid, "a SAKKE point of order q")
    return _CERTIFICATES.judge(ctx, rule, "PubEncKey valid")


@check("certificate.pub-auth-key")
def pub_auth_key(ctx: CheckContext) -> Finding:
    """PubAuthKey is a P-256 point 04||x||y on the curve, not infinity."""

    return _CERTIFICATES.judge(
        ctx,
        _public_key_rule("PubAuthKey", _pub_auth_key_valid, "a P-256 point"),
        "PubAuthKey valid",
    )


@check("certificate.parameter-set")
def parameter_set(ctx: CheckContext) -> Finding:
    """ParameterSet, when present, is 1 (the only defined SAKKE parameter set)."""
    return _CERTIFICATES.judge(
        ctx, _integer_if_present("ParameterSet", 1), "ParameterSet 1 or absent"
    )


@check("certificate.user-id-format")
def user_id_format(ctx: CheckContext) -> Finding:
    """UserIdFormat names the Annex F MIKEY-SAKKE UID scheme (2)."""
    return _CERTIFICATES.judge(ctx, _integer_if_present("UserIdFormat", 2), "UserIdFormat 2")


@check("certificate.key-period")
@_CERTIFICATES.every("key period parameters consistent")
def key_period(ctx: CheckContext, cert: KmsCertificate) -> str | None:
    """UserKeyPeriod > 0 and 0 <= UserKeyOffset < UserKeyPeriod."""
    period = parse_int(cert.get("UserKeyPeriod"))
    offset = parse_int(cert.get("UserKeyOffset"))
    if period is None or offset is None:
        return "UserKeyPeriod or UserKeyOffset is not an integer"
    if period <= 0:
        return f"UserKeyPeriod {period} is not positive"
    if not 0 <= offset < period:
        return f"UserKeyOffset {offset} is not in [0, UserKeyPeriod {period})"
    return None


@check("certificate.validity")
@_CERTIFICATES.every("certificate current and not revoked")
def validity(ctx: CheckContext, cert: KmsCertificate) -> str | None:
    """Now lies within ValidFrom/ValidTo, and Revoked is not true."""
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


@check("certificate.version")
def version(ctx: CheckContext) -> Finding:
    """KmsCertificate/@Version is the profile's version (examples 1.1.0)."""
    wanted = ctx.profile.expected_versions.get("KmsCertificate")
    if wanted is None:
        return skipped("the profile fixes no KmsCertificate version")
    rule = functools.partial(version_problem, wanted=wanted)
    return _CERTIFICATES.judge(ctx, rule, f"Version {wanted}")


@check("certcache.present")
@verifies(carries, KmsCertCache)
def cert_cache_present(ctx: CheckContext, cache: KmsCertCache) -> Finding:
    """The response carries a KmsCertCache."""
    return ok(f"KmsCertCache with {len(cache.certificates)} certificate(s)")


@check("certcache.attributes")
@verifies(versioned, KmsCertCache, "1.0.0")
def cert_cache_attributes(ctx: CheckContext, cache: KmsCertCache) -> Finding:
    """KmsCertCache/@Version is 1.0.0; @CacheNum, if present, is an integer."""
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
