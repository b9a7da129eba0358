"""What the probe sends: the request bodies of the KMS request types (kms-interface.md 3).

``request_body`` is the one place a body variant of a case step (``body: signed``,
``krrlist``, ``malformed`` ...) becomes octets; ``RequestBuilder`` writes KmsRequest in the
profile's namespace and signs it (HMAC-SHA256, C14N 1.0) with the plan's key;
``read_message_content`` reads a preliminary answer the probe needs (KMS CertCache's
CacheNum). Split from sender.py (issue 17). May import: crypto, xmlsec, model, profiles,
target, exchange, xmlsafe; never the engine or checks.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

from lxml import etree

from conformance.core.exchange import Exchange, RecordedRequest
from conformance.core.limits import Limits
from conformance.core.xmlsafe import XmlRejected, hardened_parser, parse_xml
from conformance.crypto import CryptoError
from conformance.model.messages import (
    EncryptedContent,
    MessageContent,
    NotAKmsResponse,
    parse_message_content,
    parse_response,
)
from conformance.profiles import Profile
from conformance.target.auth import other_means
from conformance.target.file import Target, User
from conformance.xmlsec import xmldsig, xmlenc

KMS_REQUEST_VERSION: Final = "1.1.0"
EXTENSION_NS: Final = "urn:example:ext"
JUNK_OCTETS: Final = 1024 * 1024
TIME_SHIFT: Final = timedelta(days=1)
RANDOM_KEY_OCTETS: Final = 32
RANDOM_KEY_ID_OCTETS: Final = 16

# -- request bodies ------------------------------------------------------------------------


_SIGNED_VARIANTS: Final = frozenset(
    {"signed", "signed-ink", "signed-trk", "signed-wrong-key", "signed-wrong-id", "bad-signature"}
)


TOKEN_VARIANTS: Final = (
    "valid",
    "none",
    "expired",
    "wrong_scope",
    "malformed",
    "bad_signature",
    "other_user",
)
_NEGATIVE_TOKENS: Final = ("expired", "wrong_scope", "malformed", "bad_signature")


class MissingInput(Exception):
    """A PIXIT input the step needs is absent from the target file: the case is n/a."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"needs {what}")


class PreconditionFailed(Exception):
    """A preliminary exchange the step needs failed: the case is inconc (one-line message)."""


@dataclass(frozen=True)
class PreparedRequest:
    method: str
    url: str
    raw_target: bytes | None
    headers: dict[str, str]
    body: bytes
    token_variant: str
    body_variant: str
    notes: list[str] = field(default_factory=list)
    identity: str = "anonymous"  # whose connections the request may use
    credential_user: int = 1


def identity_of(token_variant: str, credential_no: int, has_credentials: bool) -> str:
    """The credential set a request carries: requests of different identities never share
    a connection (a tokenless case must not ride on one that carried a token). Identity
    headers of the credential user make a tokenless request that user's."""
    carries = token_variant != "none" or has_credentials
    return f"user{credential_no}:{token_variant}" if carries else "anonymous"


@dataclass(frozen=True)
class SigningPlan:
    key: bytes = field(repr=False)
    key_id: bytes  # what Signature-ID and ds:KeyName name
    flip_signature: bool = False


class StepError(Exception):
    """A step the probe cannot build: a catalogue or engine bug, not a target problem."""


def unsent_exchange(label: str, step: Mapping[str, Any], problem: str) -> Exchange:
    return Exchange(
        label,
        RecordedRequest(
            method=str(step.get("method", "POST")),
            url="",
            path="",
            headers=(),
            body=b"",
            token_variant=str(step.get("token", "valid")),
            body_variant=str(step.get("body", "none")),
        ),
        error=problem,
        error_kind="usage",
    )


class RequestBuilder:
    def __init__(self, profile: Profile, now: datetime) -> None:
        self.profile = profile
        self.now = now
        self.ns = profile.namespace

    def apply_overrides(self, values: dict[str, Any], fields: Mapping[str, Any]) -> None:
        for key, value in fields.items():
            name, text = str(key), str(value)
            if text == "omit":
                values.pop(name, None)
            elif name == "Time" and text == "stale":
                values[name] = xsd_date_time(self.now - TIME_SHIFT)
            elif name == "Time" and text == "future":
                values[name] = xsd_date_time(self.now + TIME_SHIFT)
            elif name == "TrK-ID" and text == "unknown":
                values[name] = b64(secrets.token_bytes(RANDOM_KEY_ID_OCTETS))
            else:
                values[name] = text

    def kms_request(self, values: Mapping[str, Any], *, extension: bool) -> etree._Element:
        request = etree.Element(self._tag("KmsRequest"), nsmap={None: self.ns})  # type: ignore[dict-item]
        request.set("Version", KMS_REQUEST_VERSION)
        ordered = [n for n in self.profile.request_child_order if n in values]
        ordered += [n for n in values if n not in self.profile.request_child_order]
        for name in ordered:
            value = values[name]
            if isinstance(value, etree._Element):
                request.append(value)
            else:
                etree.SubElement(request, self._tag(name)).text = str(value)
        if extension:
            etree.SubElement(request, f"{{{EXTENSION_NS}}}Foo", nsmap={"x": EXTENSION_NS})
        return request

    def signed(self, request: etree._Element, plan: SigningPlan) -> etree._Element:
        wrapper = etree.Element(self._tag("SignedKmsRequest"), nsmap={None: self.ns})  # type: ignore[dict-item]
        wrapper.append(request)
        signature = xmldsig.sign(
            request, plan.key, plan.key_id, id_value=f"kmsreq-{secrets.token_hex(6)}"
        )
        if plan.flip_signature:
            value = signature.find(f"{{{xmldsig.DS_NS}}}SignatureValue")
            assert value is not None
            octets = bytearray(xmldsig.decode_base64(value.text, "SignatureValue"))
            octets[0] ^= 0x01
            value.text = b64(bytes(octets))
        return wrapper

    def _tag(self, name: str) -> str:
        return f"{{{self.ns}}}{name}"


def signing_plan(variant: str, user_no: int, user: User) -> SigningPlan:
    trk, ink = user.trk, user.ink
    if variant == "signed-ink":
        if ink is None:
            raise MissingInput(f"users[{user_no}].ink")
        return SigningPlan(ink.key.reveal(), ink.key_id)
    if variant == "signed-trk":
        if trk is None:
            raise MissingInput(f"users[{user_no}].trk")
        return SigningPlan(trk.key.reveal(), trk.key_id)
    # D.2.2: the InK signs when there is one, else the TrK.
    chosen = ink or trk
    if chosen is None:
        raise MissingInput(f"users[{user_no}].trk")
    if variant == "signed-wrong-key":
        return SigningPlan(secrets.token_bytes(RANDOM_KEY_OCTETS), chosen.key_id)
    if variant == "signed-wrong-id":
        other = trk if chosen is ink else None
        wrong_id = other.key_id if other is not None else secrets.token_bytes(RANDOM_KEY_ID_OCTETS)
        return SigningPlan(chosen.key.reveal(), wrong_id)
    flip = variant == "bad-signature"
    return SigningPlan(chosen.key.reveal(), chosen.key_id, flip_signature=flip)


def krr_list(profile: Profile, *, well_formed: bool) -> etree._Element:
    element = etree.Element(f"{{{profile.namespace}}}KrrList")
    if well_formed:
        # D.4.4's element names could not be read (schemas/krr): one empty KRR root element
        # is what the open KRR content model certainly accepts.
        etree.SubElement(
            element,
            f"{{{profile.krr_namespace}}}KmsRedirectResponse",
            nsmap={"krr": profile.krr_namespace},
        )
    else:
        element.text = "not a KMS Redirect Response"
    return element


def cut_in_an_element(document: bytes) -> bytes:
    # Inside the KmsUri start tag when there is one: unmistakably not well-formed.
    cut = document.find(b"<KmsUri")
    return document[: cut + 4] if cut >= 0 else document[: len(document) // 2]


_JUNK_PATTERN: Final = b"\xff\xfe junk \x00 not XML \x01\x02\x03 "


def junk_body() -> bytes:
    repeats = JUNK_OCTETS // len(_JUNK_PATTERN) + 1
    return (_JUNK_PATTERN * repeats)[:JUNK_OCTETS]


def serialize(element: etree._Element) -> bytes:
    return etree.tostring(element, xml_declaration=True, encoding="UTF-8")


def xsd_date_time(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def path_segment(value: str) -> str:
    """One path segment: ':' -> %3A, '@' -> %40, '/' -> %2F (kms-interface.md 3.2)."""
    return quote(value, safe="")


def user_number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise StepError(f"user must be a 1-based number, not {value!r}")
    try:
        return int(value)
    except ValueError:
        raise StepError(f"user must be a 1-based number, not {value!r}") from None


def request_body(
    variant: str,
    user_no: int,
    user: User,
    url: str,
    fields: Mapping[str, Any],
    *,
    profile: Profile,
    now: datetime,
    kms_uri: Callable[[], str],
) -> bytes:
    """The body of a request of body variant ``variant`` (testcases/FORMAT.md) sent by
    user ``user_no`` to ``url``; ``kms_uri`` is asked only when the body names the KMS."""
    if variant == "none":
        return b""
    if variant == "junk":
        return junk_body()
    builder = RequestBuilder(profile, now)
    values: dict[str, Any] = {
        "UserUri": user.uri,
        "KmsUri": kms_uri(),
        "Time": xsd_date_time(builder.now),
        "ClientReqUrl": url,
    }
    if profile.has_trk_id_elements and user.trk is not None:
        values["TrK-ID"] = user.trk.key_id_b64
    if variant == "krrlist":
        values["KrrList"] = krr_list(profile, well_formed=True)
    elif variant == "bad-krrlist":
        values["KrrList"] = krr_list(profile, well_formed=False)
    signing = signing_plan(variant, user_no, user) if variant in _SIGNED_VARIANTS else None
    if signing is not None and profile.has_trk_id_elements:
        values["Signature-ID"] = b64(signing.key_id)
    builder.apply_overrides(values, fields)
    request = builder.kms_request(values, extension=variant == "extension")
    if variant == "malformed":
        return cut_in_an_element(serialize(request))
    if signing is None:
        return serialize(request)
    return serialize(builder.signed(request, signing))


def read_message_content(
    body: bytes, user: User, profile: Profile, max_body: int, limits: Limits
) -> MessageContent | None:
    """The KmsMessage content of a response, decrypted with the user's TrK if needed."""
    try:
        response = parse_response(
            parse_xml(body, max_bytes=max_body, limits=limits),
            profile.namespace,
        )
    except (XmlRejected, NotAKmsResponse):
        return None
    content = response.kms_message.content if response.kms_message else None
    if not isinstance(content, EncryptedContent):
        return content
    if user.trk is None:
        return None
    try:
        plaintext = xmlenc.decrypt_content(content.element, user.trk.key.reveal())
        nodes = xmlenc.parse_plaintext_fragment(content.element, plaintext, hardened_parser())
    except (CryptoError, etree.XMLSyntaxError, ValueError):
        return None
    for node in nodes:
        if isinstance(node.tag, str):
            return parse_message_content(node, profile.namespace)
    return None


def bearer_token(
    target: Target, variant: str, user_no: int, user_of: Callable[[int], User]
) -> str | None:
    """The Authorization token of token variant ``variant`` (testcases/FORMAT.md)."""
    if variant == "none":
        if not target.bearer:
            means = other_means(target, user_of(user_no)) or "other means"
            raise MissingInput(
                f"Bearer tokens (the target identifies users by {means}, so a request "
                "without a token is not an unauthenticated one)"
            )
        return None
    if variant in ("valid", "other_user"):
        owner_no = user_no if variant == "valid" else (2 if user_no == 1 else 1)
        owner = user_of(owner_no)
        if owner.token is None:
            if other_means(target, owner):
                return None  # the identity header or client certificate says who
            raise MissingInput(f"users[{owner_no}].token")
        return owner.token.text()
    if variant in _NEGATIVE_TOKENS:
        negative = getattr(target.tokens, variant)
        if negative is None:
            raise MissingInput(f"tokens.{variant}")
        return str(negative.text())
    raise StepError(f"unknown token {variant!r} (known: {', '.join(TOKEN_VARIANTS)})")


def credential_user(variant: str, user_no: int) -> int:
    """Whose credentials (headers, client certificate) a request carries."""
    return (2 if user_no == 1 else 1) if variant == "other_user" else user_no
