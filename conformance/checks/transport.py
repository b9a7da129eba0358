"""HTTP and TLS checks: TS 33.180 D.1 (HTTPS), D.3.1 (XML bodies) and caching practice."""

from __future__ import annotations

import re

from conformance.checks.base import CheckContext, Finding, check, ok, shorten, skipped, violation
from conformance.checks.errors import key_material
from conformance.checks.verify import successful, verifies
from conformance.core.exchange import Exchange

XML_TYPES = ("application/xml", "text/xml")
MINIMUM_TLS = (1, 2)
TLS_VERSION = re.compile(r"TLS\s*v?(\d+)(?:\.(\d+))?", re.IGNORECASE)


@check("transport.content-type-xml")
@verifies(successful)
def content_type_xml(ctx: CheckContext, exchange: Exchange) -> Finding:
    """A successful response with a body is labelled as XML (application/xml, text/xml, +xml)."""
    if not exchange.body.strip():
        return skipped(f"HTTP {exchange.status} without a body")
    content_type = exchange.content_type
    if content_type in XML_TYPES or content_type.endswith("+xml"):
        return ok(f"Content-Type {content_type}")
    return violation(
        "the XML body is not labelled as XML",
        "application/xml or text/xml",
        content_type or "(no Content-Type)",
    )


@check("transport.cache-control")
@verifies(successful)
def cache_control(ctx: CheckContext, exchange: Exchange) -> Finding:
    """A successful response says Cache-Control: no-store (or private, no-cache)."""
    header = exchange.header("cache-control")
    directives = {d.strip().split("=", 1)[0].lower() for d in (header or "").split(",")}
    if "no-store" in directives or {"private", "no-cache"} <= directives:
        return ok(f"Cache-Control: {header}")
    return violation(
        "intermediaries may cache the response",
        "Cache-Control: no-store",
        shorten(header),
    )


@check("transport.tls")
def tls(ctx: CheckContext) -> Finding:
    """The exchange ran over TLS 1.2 or newer."""
    if ctx.exchange is None:
        return skipped("no HTTP exchange recorded (offline)")
    if _plain_http(ctx.exchange):
        return skipped("a plain-HTTP step (judged by transport.http-refused)")
    facts = ctx.exchange.tls
    if facts is None or facts.version is None:
        reason = ctx.exchange.error or "no TLS session recorded"
        return violation("the exchange shows no TLS session", "TLS 1.2 or newer", reason)
    match = TLS_VERSION.search(facts.version)
    version = (int(match.group(1)), int(match.group(2) or 0)) if match else None
    if version is None or version < MINIMUM_TLS:
        return violation("the TLS version is too old", "TLS 1.2 or newer", facts.version)
    return ok(f"{facts.version}, {facts.cipher or 'cipher not recorded'}")


@check("transport.http-refused")
def http_refused(ctx: CheckContext) -> Finding:
    """A plain-HTTP request yields no key material (refused, redirected or an error)."""
    if ctx.exchange is None:
        return skipped("no HTTP exchange recorded (offline)")
    exchange = ctx.exchange
    if not _plain_http(exchange):
        return skipped("not a plain-HTTP step")
    if not exchange.answered:
        return ok(f"plain HTTP refused: {exchange.error}")
    found = key_material(ctx)
    if found:
        return violation("key material served over plain HTTP", "no key material", ", ".join(found))
    location = exchange.header("location") or ""
    if exchange.status is not None and 300 <= exchange.status < 400:
        return ok(f"plain HTTP redirected ({exchange.status} to {shorten(location)})")
    return ok(f"plain HTTP answered HTTP {exchange.status} without key material")


# -- helpers ----------------------------------------------------------------------------


def _plain_http(exchange: Exchange) -> bool:
    return exchange.request.url.lower().startswith("http://")
