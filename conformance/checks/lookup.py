"""KMS Lookup and KMS Redirect upload checks: TS 33.180 D.3.1 (Rel-17) and the seed CR.

The structure of ``KmsLookup`` is inferred (DESIGN.md section 7: ``UserUri`` then one or
more ``KmsUri``), so its checks are marked inferred and their violations are warnings.
"""

from __future__ import annotations

from conformance.checks.base import (
    CheckContext,
    Finding,
    check,
    content_name,
    ok,
    shorten,
    skipped,
    violation,
)
from conformance.checks.verify import answered, carries, content_of, verifies
from conformance.core.exchange import Exchange
from conformance.model.messages import KmsLookup


@check("lookup.present")
@verifies(carries, KmsLookup)
def lookup_present(ctx: CheckContext, _: KmsLookup) -> Finding:
    """KMS Lookup answers a KmsLookup in KmsMessage."""
    return ok("KmsLookup present")


@check("lookup.user-uri")
@verifies(content_of, KmsLookup)
def lookup_user_uri(ctx: CheckContext, found: KmsLookup) -> Finding:
    """KmsLookup/UserUri is the SIP URI that was looked up."""
    wanted = _requested_sip_uri(ctx)
    if wanted is None:
        return skipped("the step names no SIP URI")
    if found.user_uri != wanted:
        return violation("KmsLookup names another SIP URI", wanted, shorten(found.user_uri))
    return ok(f"KmsLookup is for {wanted}")


@check("lookup.kms-uri")
@verifies(content_of, KmsLookup)
def lookup_kms_uri(ctx: CheckContext, found: KmsLookup) -> Finding:
    """KmsLookup gives the KMS URI the PIXIT associates with the SIP URI."""
    sip_uri = _requested_sip_uri(ctx)
    entries = ctx.target.pixit.lookup if ctx.target is not None else ()
    wanted = next((e.kms_uri for e in entries if e.sip_uri == sip_uri), None)
    if wanted is None:
        return skipped(f"the PIXIT [[pixit.lookup]] has no entry for {sip_uri}")
    if wanted not in found.kms_uris:
        observed = ", ".join(found.kms_uris) or "(no KmsUri)"
        return violation("KmsLookup gives another KMS URI", wanted, observed)
    return ok(f"{sip_uri} belongs to {wanted}")


@check("redirect.no-content")
@verifies(answered)
def redirect_no_content(ctx: CheckContext, exchange: Exchange) -> Finding:
    """A successful redirect upload answers 2xx with no KmsMessage (no content)."""
    assert exchange.status is not None  # answered() says so
    if not 200 <= exchange.status < 300:
        return violation("the upload was not accepted", "2xx", f"HTTP {exchange.status}")
    if not exchange.body.strip():
        return ok(f"HTTP {exchange.status} with no content")
    response = ctx.response
    if response is None:
        return violation(
            "the upload answer has content that is not a KmsResponse",
            "no content",
            f"{len(exchange.body)} octets",
        )
    if response.kms_error is not None:
        return violation("a 2xx upload answer carries KmsError", "no content", "KmsError")
    if response.kms_message is not None:
        return violation("the upload answer carries a message", "no KmsMessage", content_name(ctx))
    return ok(f"HTTP {exchange.status}, KmsResponse without KmsMessage")


def _requested_sip_uri(ctx: CheckContext) -> str | None:
    # The engine puts the decoded path segment here; "known"/"unknown" in the step are names.
    value = ctx.params.get("requested_sip_uri")
    return value if isinstance(value, str) and value else None
