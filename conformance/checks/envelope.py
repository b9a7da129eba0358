"""KmsResponse envelope checks: TS 33.180 D.3.1 (Table D.3.1-1) and the D.3.5.1 schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from lxml import etree

from conformance.checks.base import (
    CheckContext,
    Finding,
    check,
    content_name,
    ok,
    own_kms_uri,
    shorten,
    skipped,
    violation,
)
from conformance.checks.values import parse_datetime, parse_int
from conformance.checks.verify import response_field, verifies
from conformance.model.messages import XENC_NS, XSI_NS, KmsCertCache, KmsInit, KmsKeyProv, KmsLookup
from conformance.profiles import Profile, load_fast_schema, load_schema

if TYPE_CHECKING:  # imported with the compiled schema (profiles.load_schema)
    import xmlschema

EXPECTED_CONTENT = {
    "init": KmsInit,
    "keyprov": KmsKeyProv,
    "certcache": KmsCertCache,
    "cert": KmsCertCache,
    "lookup": KmsLookup,
}
SCHEMA_REASON_LIMIT = 160


@check("envelope.root")
def root(ctx: CheckContext) -> Finding:
    """The root is KmsResponse or SignedKmsResponse in the profile's namespace."""
    if ctx.response is None:
        return violation("no KmsResponse document", "KmsResponse", _observed_root(ctx))
    document = ctx.response.root if ctx.response.root is not None else ctx.response.element
    return ok(f"root {etree.QName(document).localname}")


@check("envelope.schema")
def schema_valid(ctx: CheckContext) -> Finding:
    """The document validates against the profile's XSD (order and cardinality included)."""
    if ctx.raw is None:
        return skipped("no KmsResponse document")
    document = ctx.raw.root if ctx.raw.root is not None else ctx.raw.element
    namespace = ctx.raw.namespace if ctx.profile.namespace_configurable else None
    errors = list(profile_schema_errors(ctx.profile, namespace, document))
    if not errors:
        return ok(f"valid against the {ctx.profile.name} schema")
    where, reason = errors[0]
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return violation(f"schema: {where}: {reason}{more}", "schema-valid", f"{len(errors)} error(s)")


def profile_schema_errors(
    profile: Profile, namespace: str | None, document: etree._Element
) -> Iterator[tuple[str, str]]:
    """``schema_errors`` against the profile's XSD; the xmlschema compilation (about a
    second) happens only for a document libxml2 does not find valid."""
    fast = load_fast_schema(profile, namespace)
    if fast is not None and fast.validate(document):
        return iter(())
    return schema_errors(load_schema(profile, namespace), document, fast)


def schema_errors(
    schema: xmlschema.XMLSchema,
    document: etree._Element,
    fast: etree.XMLSchema | None = None,
) -> Iterator[tuple[str, str]]:
    """(path, one-line reason) of each way ``document`` breaks ``schema``.

    ``fast``, libxml2's compilation of the same XSD, answers first: a document it finds
    valid is not validated again (xmlschema, in Python, costs about 5 ms per key set);
    any other answer goes to xmlschema for the messages. xmlschema raises, instead of
    reporting, when an ``xsi:type`` names no type of the schema; such a document is
    invalid (XML Schema 1.0 cvc-elt.4.2), not a harness failure.
    """
    if fast is not None and fast.validate(document):
        return
    from xmlschema.exceptions import XMLSchemaKeyError

    try:
        for error in schema.iter_errors(etree.ElementTree(document)):
            path = str(getattr(error, "path", None) or "")
            yield path, _schema_reason(getattr(error, "reason", error) or error)
    except XMLSchemaKeyError as exc:
        reason = _schema_reason(f"xsi:type names no type of the schema ({exc})")
        yield _unknown_type_path(schema, document), reason


def _schema_reason(reason: object) -> str:
    text = " ".join(str(reason).split())
    return text if len(text) <= SCHEMA_REASON_LIMIT else text[: SCHEMA_REASON_LIMIT - 3] + "..."


def _unknown_type_path(schema: xmlschema.XMLSchema, document: etree._Element) -> str:
    for element in document.iter():
        value = element.get(f"{{{XSI_NS}}}type") if isinstance(element.tag, str) else None
        if value is None:
            continue
        prefix, _, local = value.rpartition(":")
        namespace = element.nsmap.get(prefix or None)
        if (f"{{{namespace}}}{local}" if namespace else local) not in schema.maps.types:
            names = [etree.QName(e).localname for e in (element, *element.iterancestors())]
            return "/" + "/".join(reversed(names))
    return ""


@check("envelope.version")
def version(ctx: CheckContext) -> Finding:
    """KmsResponse/@Version is 1.0.0 (absent means the fixed value)."""
    if ctx.raw is None:
        return skipped("no KmsResponse")
    wanted = ctx.profile.expected_versions.get("KmsResponse")
    got = ctx.raw.attr("Version")
    if wanted is None or got is None or got == wanted:
        return ok(f"Version {got or '(fixed default)'}")
    return violation("KmsResponse has the wrong Version", wanted, got)


@check("envelope.user-uri")
def user_uri(ctx: CheckContext) -> Finding:
    """UserUri is present and names the user the response is for."""
    return _field_equals(ctx, "UserUri", ctx.expected_user_uri)


@check("envelope.kms-uri")
def kms_uri(ctx: CheckContext) -> Finding:
    """KmsUri is present and is the KMS URI of the Root certificate."""
    return _field_equals(ctx, "KmsUri", own_kms_uri(ctx))


@check("envelope.time")
@verifies(response_field, "Time", "xsd:dateTime")
def time(ctx: CheckContext, text: str) -> Finding:
    """Time is an xsd:dateTime close to when the response was received."""
    sent = parse_datetime(text)
    if sent is None:
        return violation("Time is not an xsd:dateTime", "xsd:dateTime", shorten(text))
    if ctx.params.get("offline"):
        return ok(f"Time {text} is an xsd:dateTime")
    skew = abs((sent - ctx.now).total_seconds())
    if skew > ctx.allowed_skew_s:
        return violation(
            f"Time is {skew:.0f} s away from the harness clock",
            f"within {ctx.allowed_skew_s:.0f} s of {ctx.now:%Y-%m-%dT%H:%M:%SZ}",
            text,
        )
    return ok(f"Time {text} within {ctx.allowed_skew_s:.0f} s")


@check("envelope.kms-id")
def kms_id(ctx: CheckContext) -> Finding:
    """KmsId is optional; if present it is a non-empty string."""
    if ctx.raw is None or "KmsId" not in ctx.raw.counts:
        return ok("KmsId absent (optional)")
    value = ctx.raw.get("KmsId")
    return ok(f"KmsId {shorten(value)}") if value else violation("KmsId is empty")


@check("envelope.client-req-url")
@verifies(response_field, "ClientReqUrl", "the request URI")
def client_req_url(ctx: CheckContext, text: str) -> Finding:
    """ClientReqUrl echoes the resource the request was posted to (path compared)."""
    posted = ctx.http.path if ctx.http else ctx.params.get("request_path")
    if posted is None:
        return ok("ClientReqUrl present (no request path to compare with)")
    if _same_path(text, posted):
        return ok("ClientReqUrl echoes the request path")
    return violation("ClientReqUrl names another resource", posted, shorten(text))


@check("envelope.message-choice")
def message_choice(ctx: CheckContext) -> Finding:
    """KmsMessage holds exactly one message element (or EncryptedData)."""
    if ctx.raw is None or ctx.raw.kms_message is None:
        return skipped("no KmsMessage")
    namespace = ctx.raw.namespace
    children = ctx.raw.kms_message.children
    known = [
        c
        for c in children
        if (c.namespace == namespace and c.local in _MESSAGE_NAMES)
        or (c.namespace == XENC_NS and c.local == "EncryptedData")
    ]
    if len(known) != 1:
        names = ", ".join(c.local for c in children) or "nothing"
        return violation(f"KmsMessage holds {len(known)} message elements", "1", names)
    return ok(f"KmsMessage holds {known[0].local}")


@check("envelope.message-type")
def message_type(ctx: CheckContext) -> Finding:
    """The KmsMessage type matches the request (init->KmsInit, keyprov->KmsKeyProv, ...)."""
    wanted = EXPECTED_CONTENT.get(ctx.request_type or "")
    if wanted is None:
        return skipped(f"no message type defined for request type {ctx.request_type}")
    message = ctx.response.kms_message if ctx.response else None
    if message is None or not isinstance(message.content, wanted):
        return violation(
            f"{ctx.request_type} answered without {wanted.__name__}",
            wanted.__name__,
            content_name(ctx),
        )
    return ok(f"{ctx.request_type} answered with {wanted.__name__}")


@check("envelope.no-error")
def no_error_with_message(ctx: CheckContext) -> Finding:
    """KmsError and KmsMessage are not both present."""
    if ctx.raw is None:
        return skipped("no KmsResponse")
    if ctx.raw.kms_error is not None and ctx.raw.kms_message is not None:
        return violation("KmsError and KmsMessage both present", "one of them", "both")
    return ok("not both KmsMessage and KmsError")


@check("error.kms-error")
def kms_error_shape(ctx: CheckContext) -> Finding:
    """KmsError carries an integer ErrorCode and a string ErrorMsg, and no KmsMessage."""
    status = ctx.http.status if ctx.http else ctx.exchange.status if ctx.exchange else None
    if status is not None and 200 <= status < 300 and (ctx.raw is None or not ctx.raw.kms_error):
        # A request served although it should have been refused breaks the rule of the
        # refusal (judged by the step's expected status), not the shape of a KmsError.
        return skipped(f"HTTP {status}: no error answer whose KmsError to judge")
    if ctx.raw is None:
        return violation("no KmsResponse with KmsError", "KmsError", _observed_root(ctx))
    error = ctx.raw.kms_error
    if error is None:
        return violation("no KmsError in the error response", "KmsError", content_name(ctx))
    if parse_int(error.error_code) is None:
        return violation("ErrorCode is not an integer", "xsd:integer", shorten(error.error_code))
    if error.error_msg is None:
        return violation("ErrorMsg is missing", "ErrorMsg", "(absent)")
    if ctx.raw.kms_message is not None:
        return violation("KmsMessage present beside KmsError", "no KmsMessage", "KmsMessage")
    return ok(f"KmsError {error.error_code}: {shorten(error.error_msg, 60)}")


# -- helpers ----------------------------------------------------------------------------

_MESSAGE_NAMES = ("KmsInit", "KmsKeyProv", "KmsCertCache", "KmsLookup")


def _field_equals(ctx: CheckContext, name: str, expected: str | None) -> Finding:
    value = response_field(ctx, name, expected or "present")
    if isinstance(value, Finding):
        return value
    if expected is None:
        return ok(f"{name} present ({shorten(value)}); nothing to compare with")
    if value != expected:
        return violation(
            f"{name} is {shorten(value)}, expected {shorten(expected)}", expected, value
        )
    return ok(f"{name} is {shorten(value)}")


def _same_path(reported: str, posted: str) -> bool:
    # Scheme and host may legitimately differ (proxies, internal names); the path may not.
    def path_of(url: str) -> str:
        return unquote(urlsplit(url.strip()).path).rstrip("/")

    return path_of(reported) == path_of(posted)


def _observed_root(ctx: CheckContext) -> str:
    if ctx.http is None:
        return "(no document)"
    return f"HTTP {ctx.http.status}, {len(ctx.http.body)} octets"
