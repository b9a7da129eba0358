"""Parsed KMS messages: ``KmsResponse`` and everything it can carry (TS 33.180 D.3).

A response is parsed once, by namespace and local name, into plain objects holding the
raw text of each field and the element it came from. Nothing here judges values, order or
cardinality: checks do that, so one misplaced or malformed element gives one clear
violation instead of a parse crash. Where an element occurs more than once the first is
kept and ``counts`` records how many there were.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

KMS_NS = "urn:3gpp:ns:mcsecKMSInterface:1.0"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
XENC_NS = "http://www.w3.org/2001/04/xmlenc#"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

Element = etree._Element


@dataclass(frozen=True)
class QName:
    namespace: str | None
    local: str

    def __str__(self) -> str:
        return f"{{{self.namespace}}}{self.local}" if self.namespace else self.local


@dataclass
class Node:
    """Common part of every parsed element: the element itself and its child counts."""

    element: Element
    counts: Counter[str] = field(default_factory=Counter)

    def attr(self, name: str) -> str | None:
        value = self.element.get(name)
        return None if value is None else str(value)

    @property
    def xsi_type(self) -> QName | None:
        return resolve_qname(self.element, self.element.get(f"{{{XSI_NS}}}type"))


@dataclass
class KeyContent(Node):
    """One of UserDecryptKey, UserSigningKeySSK, UserPubTokenPVT (abstractKeyContentType)."""

    text: str = ""
    encrypted_key: Element | None = None
    plaintext: bytes | None = None  # set by the security step once an EncryptedKey is opened


@dataclass
class KmsCertificate(Node):
    signed: bool = False
    signature: Element | None = None
    fields: dict[str, str] = field(default_factory=dict)
    kms_domains: tuple[str, ...] = ()

    def get(self, name: str) -> str | None:
        return self.fields.get(name)

    @property
    def kms_uri(self) -> str | None:
        return self.fields.get("KmsUri")

    @property
    def role(self) -> str | None:
        return self.attr("Role")


@dataclass
class KmsKeySet(Node):
    fields: dict[str, str] = field(default_factory=dict)
    keys: dict[str, KeyContent] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        return self.fields.get(name)


@dataclass
class KmsInit(Node):
    certificates: list[KmsCertificate] = field(default_factory=list)
    new_transport_keys: list[Element] = field(default_factory=list)
    new_integrity_keys: list[Element] = field(default_factory=list)


@dataclass
class KmsKeyProv(Node):
    key_sets: list[KmsKeySet] = field(default_factory=list)
    new_transport_keys: list[Element] = field(default_factory=list)
    new_integrity_keys: list[Element] = field(default_factory=list)


@dataclass
class KmsCertCache(Node):
    certificates: list[KmsCertificate] = field(default_factory=list)


@dataclass
class KmsLookup(Node):
    user_uri: str | None = None
    kms_uris: tuple[str, ...] = ()


@dataclass
class KmsError(Node):
    error_code: str | None = None
    error_msg: str | None = None


@dataclass
class EncryptedContent(Node):
    """An ``xenc:EncryptedData`` standing in for the content of ``KmsMessage``."""


MessageContent = KmsInit | KmsKeyProv | KmsCertCache | KmsLookup | EncryptedContent


@dataclass
class KmsMessage(Node):
    """The ``KmsMessage`` element; ``content`` is its one recognised child, if any."""

    content: MessageContent | None = None
    children: tuple[QName, ...] = ()


@dataclass
class KmsResponse(Node):
    """A ``KmsResponse``, bare or inside ``SignedKmsResponse`` (then ``signed`` is true)."""

    namespace: str = KMS_NS
    root: Element | None = None
    signed: bool = False
    signature: Element | None = None
    fields: dict[str, str] = field(default_factory=dict)
    kms_message: KmsMessage | None = None
    kms_error: KmsError | None = None
    children: tuple[QName, ...] = ()

    def get(self, name: str) -> str | None:
        return self.fields.get(name)


class NotAKmsResponse(ValueError):
    """The document root is neither KmsResponse nor SignedKmsResponse (one-line message)."""


ENVELOPE_FIELDS = ("UserUri", "KmsUri", "Time", "KmsId", "ClientReqUrl", "TrK-ID", "Signature-ID")
CERTIFICATE_FIELDS = (
    "CertUri",
    "KmsUri",
    "Issuer",
    "ValidFrom",
    "ValidTo",
    "Revoked",
    "UserIdFormat",
    "UserKeyPeriod",
    "UserKeyOffset",
    "PubEncKey",
    "PubAuthKey",
    "ParameterSet",
)
KEY_SET_FIELDS = (
    "KmsUri",
    "CertUri",
    "Issuer",
    "UserUri",
    "UserID",
    "ValidFrom",
    "ValidTo",
    "KeyPeriodNo",
    "Revoked",
)
KEY_ELEMENTS = ("UserDecryptKey", "UserSigningKeySSK", "UserPubTokenPVT")


def parse_response(root: Element, namespace: str = KMS_NS) -> KmsResponse:
    """Build the model of a response document whose root element is ``root``."""
    name = local_name(root)
    if etree.QName(root).namespace != namespace or name not in (
        "KmsResponse",
        "SignedKmsResponse",
    ):
        raise NotAKmsResponse(
            f"root element is {qname_text(root)}, expected KmsResponse or SignedKmsResponse "
            f"in namespace {namespace}"
        )
    if name == "SignedKmsResponse":
        inner = _children(root, namespace, "KmsResponse")
        if not inner:
            raise NotAKmsResponse("SignedKmsResponse holds no KmsResponse")
        response = _parse_envelope(inner[0], namespace)
        response.root = root
        response.signed = True
        signatures = _children(root, DS_NS, "Signature")
        response.signature = signatures[0] if signatures else None
        response.counts.update({"KmsResponse": len(inner), "ds:Signature": len(signatures)})
        return response
    response = _parse_envelope(root, namespace)
    response.root = root
    return response


def parse_message_content(element: Element, namespace: str = KMS_NS) -> MessageContent | None:
    """Model one child of ``KmsMessage`` (also used on decrypted plaintext)."""
    ns = etree.QName(element).namespace
    name = local_name(element)
    if ns == XENC_NS and name == "EncryptedData":
        return EncryptedContent(element)
    if ns != namespace:
        return None
    parser = _CONTENT_PARSERS.get(name)
    return parser(element, namespace) if parser else None


def local_name(element: Element) -> str:
    return str(etree.QName(element).localname)


def qname_text(element: Element) -> str:
    q = etree.QName(element)
    return f"{{{q.namespace}}}{q.localname}" if q.namespace else str(q.localname)


def resolve_qname(element: Element, value: str | None) -> QName | None:
    """Resolve a QName-valued attribute (``xsi:type``) against the element's namespaces."""
    if value is None:
        return None
    value = value.strip()
    prefix, _, local = value.rpartition(":")
    namespace = element.nsmap.get(prefix or None)
    return QName(namespace, local)


def text_of(element: Element) -> str:
    """All character content of an element, whitespace at both ends removed."""
    return "".join(str(t) for t in element.itertext()).strip()


# -- helpers ----------------------------------------------------------------------------


def _children(element: Element, namespace: str, name: str) -> list[Element]:
    return [c for c in _element_children(element) if c.tag == f"{{{namespace}}}{name}"]


def _element_children(element: Element) -> list[Element]:
    return [c for c in element if isinstance(c.tag, str)]


def _collect_fields(
    element: Element, namespace: str, names: tuple[str, ...]
) -> tuple[dict[str, str], Counter[str]]:
    fields: dict[str, str] = {}
    counts: Counter[str] = Counter()
    for child in _element_children(element):
        if etree.QName(child).namespace != namespace:
            continue
        name = local_name(child)
        counts[name] += 1
        if name in names and name not in fields:
            fields[name] = text_of(child)
    return fields, counts


def _parse_envelope(element: Element, namespace: str) -> KmsResponse:
    fields, counts = _collect_fields(element, namespace, ENVELOPE_FIELDS)
    response = KmsResponse(element, counts, namespace=namespace, fields=fields)
    response.children = tuple(
        QName(etree.QName(c).namespace, local_name(c)) for c in _element_children(element)
    )
    messages = _children(element, namespace, "KmsMessage")
    if messages:
        response.kms_message = _parse_kms_message(messages[0], namespace)
    errors = _children(element, namespace, "KmsError")
    if errors:
        response.kms_error = _parse_error(errors[0], namespace)
    return response


def _parse_kms_message(element: Element, namespace: str) -> KmsMessage:
    children = _element_children(element)
    message = KmsMessage(
        element,
        Counter(local_name(c) for c in children),
        children=tuple(QName(etree.QName(c).namespace, local_name(c)) for c in children),
    )
    for child in children:
        content = parse_message_content(child, namespace)
        if content is not None:
            message.content = content
            break
    return message


def _parse_certificate(element: Element, namespace: str) -> KmsCertificate:
    signed = local_name(element) == "SignedKmsCertificate"
    signature = None
    if signed:
        signatures = _children(element, DS_NS, "Signature")
        signature = signatures[0] if signatures else None
        inner = _children(element, namespace, "KmsCertificate")
        if not inner:
            return KmsCertificate(element, signed=True, signature=signature)
        element_for_fields = inner[0]
    else:
        element_for_fields = element
    fields, counts = _collect_fields(element_for_fields, namespace, CERTIFICATE_FIELDS)
    domains: tuple[str, ...] = ()
    lists = _children(element_for_fields, namespace, "KmsDomainList")
    if lists:
        domains = tuple(text_of(d) for d in _children(lists[0], namespace, "KmsDomain"))
    return KmsCertificate(
        element_for_fields,
        counts,
        signed=signed,
        signature=signature,
        fields=fields,
        kms_domains=domains,
    )


def _certificates(element: Element, namespace: str) -> list[KmsCertificate]:
    return [
        _parse_certificate(c, namespace)
        for c in _element_children(element)
        if etree.QName(c).namespace == namespace
        and local_name(c) in ("KmsCertificate", "SignedKmsCertificate")
    ]


def _parse_init(element: Element, namespace: str) -> KmsInit:
    return KmsInit(
        element,
        Counter(local_name(c) for c in _element_children(element)),
        certificates=_certificates(element, namespace),
        new_transport_keys=_children(element, namespace, "NewTransportKey"),
        new_integrity_keys=_children(element, namespace, "NewIntegrityKey"),
    )


def _parse_key_set(element: Element, namespace: str) -> KmsKeySet:
    fields, counts = _collect_fields(element, namespace, KEY_SET_FIELDS)
    keys: dict[str, KeyContent] = {}
    for name in KEY_ELEMENTS:
        found = _children(element, namespace, name)
        if found:
            key_element = found[0]
            encrypted = _children(key_element, XENC_NS, "EncryptedKey")
            keys[name] = KeyContent(
                key_element,
                text="" if encrypted else text_of(key_element),
                encrypted_key=encrypted[0] if encrypted else None,
            )
    return KmsKeySet(element, counts, fields=fields, keys=keys)


def _parse_key_prov(element: Element, namespace: str) -> KmsKeyProv:
    return KmsKeyProv(
        element,
        Counter(local_name(c) for c in _element_children(element)),
        key_sets=[_parse_key_set(k, namespace) for k in _children(element, namespace, "KmsKeySet")],
        new_transport_keys=_children(element, namespace, "NewTransportKey"),
        new_integrity_keys=_children(element, namespace, "NewIntegrityKey"),
    )


def _parse_cert_cache(element: Element, namespace: str) -> KmsCertCache:
    return KmsCertCache(
        element,
        Counter(local_name(c) for c in _element_children(element)),
        certificates=_certificates(element, namespace),
    )


def _parse_lookup(element: Element, namespace: str) -> KmsLookup:
    users = _children(element, namespace, "UserUri")
    return KmsLookup(
        element,
        Counter(local_name(c) for c in _element_children(element)),
        user_uri=text_of(users[0]) if users else None,
        kms_uris=tuple(text_of(k) for k in _children(element, namespace, "KmsUri")),
    )


def _parse_error(element: Element, namespace: str) -> KmsError:
    fields, counts = _collect_fields(element, namespace, ("ErrorCode", "ErrorMsg"))
    return KmsError(
        element, counts, error_code=fields.get("ErrorCode"), error_msg=fields.get("ErrorMsg")
    )


_CONTENT_PARSERS: dict[str, Any] = {
    "KmsInit": _parse_init,
    "KmsKeyProv": _parse_key_prov,
    "KmsCertCache": _parse_cert_cache,
    "KmsLookup": _parse_lookup,
}
