"""Checks after the KMS replaced its own certificate (``request: control``, control.py).

The engine judges the steps after the change against the certificate of the case's own
KMS Initialize after it (``ctx.init_certificate``) and puts the certificate the UE held
before the change in ``ctx.params["kms_certificate_before"]``. What the spec's words give:
KMS Initialize answers with the KMS's own certificate (D.3.1, REQ-070), which is now the
new one; KMS Cert returns exactly the requested certificate (REQ-116), so for the KMS's
own KmsUri the one it now has; key sets validate against the certificate they belong to
(the keyset.* checks, with the new certificate). Whether KmsCertCache lists the KMS's own
certificate the spec does not say (it names partner domains): profile setting
``own_certificate_in_certcache``, inferred, so a violation there is a warning.

Registered, like every check module, when conformance.checks is imported.
"""

from __future__ import annotations

from conformance.checks.base import (
    CheckContext,
    Finding,
    check,
    ok,
    own_kms_uri,
    root_certificate,
    skipped,
    violation,
)
from conformance.checks.values import hex_octets
from conformance.checks.verify import content_of
from conformance.model.messages import KmsCertCache, KmsCertificate

BEFORE = "kms_certificate_before"
CHANGED = "kms_certificate_changed"
_KEYS = ("PubEncKey", "PubAuthKey")


def _keys(certificate: KmsCertificate) -> tuple[bytes | None, ...]:
    return tuple(hex_octets(certificate.get(name)) for name in _KEYS)


def _fingerprint(certificate: KmsCertificate) -> str:
    auth = hex_octets(certificate.get("PubAuthKey"))
    return f"PubAuthKey {auth.hex()[:16]}..." if auth else "no readable PubAuthKey"


@check("state.kms-cert-replaced")
def kms_cert_replaced(ctx: CheckContext) -> Finding:
    """After the KMS replaced its certificate, KMS Initialize answers with the new one."""
    before = ctx.params.get(BEFORE)
    if not ctx.params.get(CHANGED):
        return skipped("the KMS's certificate was not replaced in this case")
    if not isinstance(before, KmsCertificate):
        return skipped("the certificate from before the replacement is unknown")
    now = root_certificate(ctx.response)
    if now is None:
        return skipped("no KmsInit with a certificate")
    if _keys(now) == _keys(before):
        return violation(
            "KMS Initialize still answers with the certificate from before the replacement "
            f"({_fingerprint(before)})",
            "a new PubEncKey and/or PubAuthKey (the replacement has new master keys)",
            "the same PubEncKey and PubAuthKey as before",
        )
    # A KMS may re-key one master secret only (the other public key then stays).
    kept = [n for n, a, b in zip(_KEYS, _keys(now), _keys(before), strict=True) if a == b]
    note = f"; {kept[0]} unchanged" if kept else ""
    return ok(f"a new certificate ({_fingerprint(now)}, was {_fingerprint(before)}{note})")


@check("state.cert-current")
def cert_current(ctx: CheckContext) -> Finding:
    """KMS Cert for the KMS's own KmsUri returns the certificate KMS Initialize gives now."""
    current = ctx.init_certificate
    if current is None:
        return skipped("no certificate from KMS Initialize to compare with")
    own = own_kms_uri(ctx)
    requested = ctx.params.get("requested_kms_uri")
    if own is None or requested != own:
        return skipped("the request did not name the KMS's own KmsUri")
    entries = _own_entries(ctx, own)
    if isinstance(entries, Finding):
        return entries
    mine = entries[1]
    if not mine:
        return skipped("no certificate for the KMS's own KmsUri (expect.* and cert.* judge that)")
    for certificate in mine:
        if _keys(certificate) != _keys(current):
            before = ctx.params.get(BEFORE)
            old = isinstance(before, KmsCertificate) and _keys(certificate) == _keys(before)
            return violation(
                "KMS Cert returns "
                + ("the certificate from before the replacement" if old else "another certificate")
                + f" for {own}, not the one KMS Initialize gives ({_fingerprint(current)})",
                f"the certificate of KMS Initialize ({_fingerprint(current)})",
                _fingerprint(certificate),
            )
    return ok(f"the certificate KMS Initialize gives ({_fingerprint(current)})")


@check("state.certcache-own-current")
def certcache_own_current(ctx: CheckContext) -> Finding:
    """A KmsCertCache entry for the KMS's own KmsUri is the certificate it now has."""
    mode = ctx.profile.own_certificate_in_certcache
    if mode == "unchecked":
        return skipped("profile own_certificate_in_certcache = 'unchecked'")
    current, own = ctx.init_certificate, own_kms_uri(ctx)
    if current is None or own is None:
        return skipped("no certificate from KMS Initialize to compare with")
    entries = _own_entries(ctx, own)
    if isinstance(entries, Finding):
        return entries
    content, mine = entries
    if not mine:
        if mode == "required":
            return violation(
                f"the cache lists no certificate for the KMS's own KmsUri {own}",
                "the KMS's new certificate in the cache (profile: required)",
                f"{len(content.certificates)} other certificate(s)",
            )
        return ok(f"the cache lists no certificate of its own ({own}); partner domains only")
    stale = [c for c in mine if _keys(c) != _keys(current)]
    if stale:
        return violation(
            f"the cache lists a certificate for {own} other than the one KMS Initialize "
            f"gives now ({_fingerprint(stale[0])})",
            f"the current certificate ({_fingerprint(current)}) or none",
            _fingerprint(stale[0]),
        )
    return ok(f"the cache lists the KMS's current certificate ({_fingerprint(current)})")


def _own_entries(
    ctx: CheckContext, own: str
) -> tuple[KmsCertCache, list[KmsCertificate]] | Finding:
    """The response's KmsCertCache and its certificates for the KMS URI ``own``."""
    cache = content_of(ctx, KmsCertCache)
    if isinstance(cache, Finding):
        return cache
    return cache, [c for c in cache.certificates if c.kms_uri == own]
