"""Reading and checking KmsRequest / SignedKmsRequest bodies (D.2.2, kms-interface.md 4).

An empty body is accepted (Rel-13 and non-secure clients send one). A body is checked the
way the one public KMS reports the D.2.2 intent: KmsUri is this KMS, ClientReqUrl names the
resource requested, Time is recent, UserUri is the authenticated user, and a signature
verifies with the InK when one is provisioned, else the TrK, named by Signature-ID.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

from lxml import etree

from conformance.xmlsec import xmldsig
from refkms.domain import User
from refkms.faults import ActiveFaults
from refkms.messages import NS, tag
from refkms.xmlsafe import UnsafeXml, parse_body

_MANDATORY = ("UserUri", "KmsUri", "Time", "ClientReqUrl")


class RequestRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class KmsRequest:
    user_uri: str
    kms_uri: str
    time: datetime
    client_req_url: str
    trk_id: bytes | None
    signature_id: bytes | None
    signature: etree._Element | None
    krr_list: etree._Element | None
    element: etree._Element


@dataclass(frozen=True)
class RequestContext:
    """What the KMS knows about the HTTP request a body arrived with."""

    user: User
    kms_uri: str
    path: str
    now: datetime
    window_s: int
    key_id_elements: bool
    faults: ActiveFaults


def read_request(body: bytes) -> KmsRequest | None:
    """The request in ``body``, None for an empty body; ``RequestRefused`` (400) if malformed."""
    if not body.strip():
        return None
    try:
        root = parse_body(body)
    except UnsafeXml as exc:
        raise RequestRefused(400, str(exc)) from None
    signature = None
    if root.tag == tag("SignedKmsRequest"):
        children = [child for child in root if isinstance(child.tag, str)]
        if len(children) != 2 or children[0].tag != tag("KmsRequest"):
            raise RequestRefused(400, "SignedKmsRequest holds KmsRequest then ds:Signature")
        root, signature = children
        if signature.tag != f"{{{xmldsig.DS_NS}}}Signature":
            raise RequestRefused(400, "SignedKmsRequest holds KmsRequest then ds:Signature")
    elif root.tag != tag("KmsRequest"):
        raise RequestRefused(400, f"the body root is not KmsRequest in namespace {NS}")
    fields = {name: _child_text(root, name) for name in _MANDATORY}
    missing = [name for name, value in fields.items() if value is None]
    if missing:
        raise RequestRefused(400, f"KmsRequest lacks {', '.join(missing)}")
    return KmsRequest(
        user_uri=str(fields["UserUri"]),
        kms_uri=str(fields["KmsUri"]),
        time=_date_time(str(fields["Time"])),
        client_req_url=str(fields["ClientReqUrl"]),
        trk_id=_key_id(root, "TrK-ID"),
        signature_id=_key_id(root, "Signature-ID"),
        signature=signature,
        krr_list=root.find(tag("KrrList")),
        element=root,
    )


def check_request(request: KmsRequest, context: RequestContext) -> None:
    """Refuse a request the KMS must not serve; the status says why (issue 3 item 5)."""
    faults, user = context.faults, context.user
    if request.signature is not None and not faults.on("request-bad-signature-accepted"):
        _check_signature(request, context)
    if request.kms_uri != context.kms_uri:
        raise RequestRefused(400, f"KmsUri {request.kms_uri!r} is not this KMS")
    if _decoded_path(request.client_req_url) != _decoded_path(context.path):
        raise RequestRefused(400, "ClientReqUrl does not name the resource requested")
    skew = abs((request.time - context.now).total_seconds())
    if skew > context.window_s and not faults.on("request-stale-time-accepted"):
        raise RequestRefused(400, f"Time is {skew:.0f} s away from the KMS clock")
    if request.user_uri != user.uri and not faults.on("request-useruri-not-checked"):
        raise RequestRefused(403, "UserUri is not the authenticated user")
    if request.trk_id is not None and request.trk_id != user.trk_id:
        raise RequestRefused(400, "TrK-ID does not name the user's current TrK")


def _check_signature(request: KmsRequest, context: RequestContext) -> None:
    user = context.user
    key, key_id = user.signing_key
    if context.key_id_elements and request.signature_id != key_id:
        which = "InK-ID" if user.ink is not None else "TrK-ID"
        raise RequestRefused(400, f"Signature-ID must name the {which} of the signing key")
    if request.signature is None:
        return
    result = xmldsig.verify(request.signature, key)
    if not result.ok:
        raise RequestRefused(400, f"the request signature does not verify: {result.message}")
    if not xmldsig.signature_covers(result, request.element):
        raise RequestRefused(400, "the request signature does not cover KmsRequest")


def _child_text(root: etree._Element, name: str) -> str | None:
    element = root.find(tag(name))
    if element is None:
        return None
    return (element.text or "").strip()


def _key_id(root: etree._Element, name: str) -> bytes | None:
    text = _child_text(root, name)
    if text is None:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestRefused(400, f"{name} is not base64") from None


def _date_time(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RequestRefused(400, f"Time {text!r} is not an xsd:dateTime") from None
    # Naive times are UTC (kms-interface.md section 13).
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _decoded_path(url: str) -> str:
    return unquote(urlsplit(url).path).rstrip("/")
