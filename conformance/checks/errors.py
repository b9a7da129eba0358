"""Refusal and error checks: RFC 6750 bearer-token errors, KmsError (D.3.5.1 ErrorType), and
the robustness rules of section H of the spec digest.

The shape of KmsError itself (integer ErrorCode, ErrorMsg, no KmsMessage) is judged by
``error.kms-error`` in ``envelope.py``; the checks here judge what a refusal must not carry
and what the HTTP layer says about it.
"""

from __future__ import annotations

import re

from lxml import etree

from conformance.checks.base import CheckContext, Finding, check, ok, shorten, skipped, violation
from conformance.checks.values import parse_int
from conformance.checks.verify import answered, verifies
from conformance.core.exchange import Exchange
from conformance.core.xmlsafe import XmlRejected, parse_xml
from conformance.model.messages import XENC_NS, local_name

# Elements whose presence means a response hands out private keys or new shared keys.
KEY_MATERIAL = frozenset(
    {
        "KmsKeySet",
        "UserDecryptKey",
        "UserSigningKeySSK",
        "NewTransportKey",
        "NewIntegrityKey",
    }
)
BEARER_ERROR = re.compile(r"""\berror\s*=\s*"?([A-Za-z0-9_.-]+)"?""")


@check("error.no-key-material")
def no_key_material(ctx: CheckContext) -> Finding:
    """A refused or rejected request gets no key set, private key or new TrK/InK."""
    if ctx.exchange is None and ctx.response is None:
        return skipped("no response recorded")
    found = key_material(ctx)
    if found:
        return violation("the response carries key material", "no key material", ", ".join(found))
    return ok("no key material in the response")


@check("error.www-authenticate")
@verifies(answered)
def www_authenticate(ctx: CheckContext, exchange: Exchange) -> Finding:
    """A 401 answer carries a WWW-Authenticate challenge for the Bearer scheme."""
    if exchange.status != 401:
        return skipped(f"HTTP {exchange.status}: no 401 to judge")
    challenge = exchange.header("www-authenticate")
    if challenge is None:
        return violation("401 without WWW-Authenticate", "WWW-Authenticate: Bearer", "(absent)")
    if challenge.split(None, 1)[0].lower() != "bearer":
        return violation("401 challenges another scheme", "Bearer", shorten(challenge))
    return ok(f"WWW-Authenticate: {shorten(challenge)}")


@check("error.invalid-token")
@verifies(answered)
def invalid_token(ctx: CheckContext, exchange: Exchange) -> Finding:
    """An expired or invalid token is refused with 401 and error="invalid_token"."""
    refused = exchange.status == 401 and bearer_error(exchange) == "invalid_token"
    return _bearer_refusal(exchange, refused, "invalid_token", "the invalid token")


@check("error.insufficient-scope")
@verifies(answered)
def insufficient_scope(ctx: CheckContext, exchange: Exchange) -> Finding:
    """A token without the KMS scope gets 403 insufficient_scope, or 401."""
    error = bearer_error(exchange)
    refused = exchange.status == 401 or (exchange.status == 403 and error == "insufficient_scope")
    what = "the token without the KMS scope"
    return _bearer_refusal(exchange, refused, "insufficient_scope", what, 403)


@check("error.field-order")
def field_order(ctx: CheckContext) -> Finding:
    """KmsError holds one ErrorCode followed by one ErrorMsg."""
    error = ctx.response.kms_error if ctx.response else None
    if error is None:
        return skipped("no KmsError")
    names = [local_name(c) for c in error.element if isinstance(c.tag, str)]
    fields = [n for n in names if n in ("ErrorCode", "ErrorMsg")]
    if fields != ["ErrorCode", "ErrorMsg"]:
        return violation(
            "KmsError children are not ErrorCode then ErrorMsg",
            "ErrorCode, ErrorMsg",
            ", ".join(names) or "(empty)",
        )
    return ok("ErrorCode then ErrorMsg")


@check("error.code-matches-status")
@verifies(answered)
def code_matches_status(ctx: CheckContext, exchange: Exchange) -> Finding:
    """KmsError/ErrorCode repeats the HTTP status (DESIGN.md section 7)."""
    error = ctx.response.kms_error if ctx.response else None
    if error is None:
        return skipped("no KmsError")
    code = parse_int(error.error_code)
    if code != exchange.status:
        return violation(
            "ErrorCode differs from the HTTP status",
            str(exchange.status),
            shorten(error.error_code),
        )
    return ok(f"ErrorCode {code} is the HTTP status")


@check("error.still-serving")
def still_serving(ctx: CheckContext) -> Finding:
    """After an earlier hostile step of the case, the KMS still answers (without a 5xx)."""
    if not ctx.history:
        return skipped("no earlier step in this case")
    if ctx.exchange is None:
        return skipped("no exchange recorded")
    if not ctx.exchange.answered:
        return violation(
            "the KMS no longer answers", "an HTTP answer", ctx.exchange.error or "no answer"
        )
    status = ctx.exchange.status or 0
    if status >= 500:
        return violation("the KMS answers with a server error", "< 500", str(status))
    return ok(f"the KMS still answers (HTTP {status})")


# -- helpers shared with other check modules ---------------------------------------------


def key_material(ctx: CheckContext) -> list[str]:
    """Names of key-bearing elements in the response (plaintext when it was decrypted).

    ``xenc:EncryptedData`` left undecrypted counts too: the harness cannot show that it
    holds no keys, and a refusal has nothing to encrypt.
    """
    if ctx.response is not None:
        root: etree._Element | None = ctx.response.element
    else:
        root = _parse_body(ctx.exchange)
    if root is None:
        return []
    found: list[str] = []
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        name = local_name(element)
        encrypted = name == "EncryptedData" and etree.QName(element).namespace == XENC_NS
        if (name in KEY_MATERIAL or encrypted) and name not in found:
            found.append(name)
    return found


def bearer_error(exchange: Exchange) -> str | None:
    """The ``error`` auth-param of the WWW-Authenticate challenge (RFC 6750 3), if any."""
    challenge = exchange.header("www-authenticate")
    match = BEARER_ERROR.search(challenge or "")
    return match.group(1) if match else None


def _bearer_refusal(
    exchange: Exchange, refused: bool, error: str, what: str, status: int = 401
) -> Finding:
    """The verdict on an RFC 6750 refusal: ``refused`` as the rule wants, ``what`` accepted
    (2xx), or refused without saying ``error``. A 403 rule also takes a plain 401."""
    observed = f"HTTP {exchange.status}, error={bearer_error(exchange) or '(none)'}"
    wanted = f'{status} error="{error}"' + (" or 401" if status != 401 else "")
    if refused:
        return ok(f"refused: {observed}" if status != 401 else f'401 with error="{error}"')
    if exchange.status is not None and exchange.status < 300:
        return violation(f"{what} was accepted", wanted, observed)
    return violation(f"the refusal does not say {error}", wanted, observed)


def _parse_body(exchange: Exchange | None) -> etree._Element | None:
    if exchange is None or not exchange.body.strip():
        return None
    try:
        return parse_xml(exchange.body)
    except XmlRejected:
        return None
