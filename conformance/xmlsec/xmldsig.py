"""HMAC-SHA256 XML Signature over one referenced element (kms-interface.md section 10.1).

Profile (TS 33.180 D.1 and D.3.1; URIs from W3C XML Signature 1.1 section 6 and RFC 6931):

* ``SignatureMethod`` ``http://www.w3.org/2001/04/xmldsig-more#hmac-sha256`` with the full
  256-bit output (no ``HMACOutputLength`` truncation);
* ``CanonicalizationMethod`` Canonical XML 1.0, with or without comments;
* one ``Reference``, ``URI="#<Id>"`` (or ``URI=""``, the whole document), ``DigestMethod``
  ``http://www.w3.org/2001/04/xmlenc#sha256``, optional transforms: enveloped-signature
  and Canonical XML 1.0;
* ``ds:KeyInfo/ds:KeyName`` = base64 of the key ID (InK-ID or TrK-ID).

Public API::

    sign(element, key, key_id, *, parent=None, id_value=None, whole_document=False,
         c14n_method=C14N_10, signature_method=HMAC_SHA256, digest_method=SHA256,
         hmac_output_length=None) -> ds:Signature element
    verify(signature_element, key) -> VerificationResult
    signature_covers(result, element) -> bool
    canonical_subset(element, *, with_comments) -> bytes

Helpers shared with ``xmlenc``: ``key_info_with_key_name``, ``key_name_of``,
``encode_base64``, ``decode_base64``, ``append_text_before``.

``sign`` puts the ``ds:Signature`` into the tree first and then computes it, because the
canonical form of ``SignedInfo`` depends on the namespaces and ``xml:*`` attributes in
scope where it sits. The Signature goes to ``parent`` (default: the signed element's
parent, the ``SignedKmsResponse`` shape); if that places it inside the signed element, the
enveloped-signature transform is added (the Rel-13 Kapsch shape). The non-profile
algorithm arguments exist so the reference KMS can produce the faults that ``verify`` must
catch; ``verify`` accepts only the profile.

``verify`` never raises for malformed input: every problem is a ``VerificationResult``
whose ``reason`` says which rule failed. A valid signature says nothing about elements it
does not cover; ask ``signature_covers`` before trusting an element (signature wrapping).

Canonicalization is lxml's (libxml2's) C14N. A referenced element is a document subset,
for which Canonical XML 1.0 renders every namespace in scope and inherits the ``xml:*``
attributes of its ancestors onto the apex. lxml's subtree C14N (``tostring`` of an inner
element) does not inherit ``xml:*``, keeps comments despite ``with_comments=False``, and
emits a spurious ``xmlns=""`` on children in the default namespace (lxml 6.1.3, libxml2
2.14.6). So the subset is canonicalized as a standalone copy built to carry exactly that
context, which lxml canonicalizes as a whole document (checked against libxmlsec1 in the
tests, including xml:base, xmlns="" and nested default namespaces).
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar, cast

from lxml import etree

from conformance.core.xmlsafe import is_inside
from conformance.crypto.errors import CryptoError, InvalidEncoding, UnsupportedAlgorithm

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
XML_NS = "http://www.w3.org/XML/1998/namespace"

C14N_10 = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
C14N_10_WITH_COMMENTS = C14N_10 + "#WithComments"
ENVELOPED_SIGNATURE = DS_NS + "enveloped-signature"

HMAC_SHA1 = DS_NS + "hmac-sha1"
HMAC_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"
HMAC_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#hmac-sha384"
HMAC_SHA512 = "http://www.w3.org/2001/04/xmldsig-more#hmac-sha512"

SHA1 = DS_NS + "sha1"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SHA384 = "http://www.w3.org/2001/04/xmldsig-more#sha384"
SHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"

HMAC_SHA256_BITS = 256
_SHA256_OCTETS = 32

_HMAC_HASHES = {
    HMAC_SHA1: "sha1",
    HMAC_SHA256: "sha256",
    HMAC_SHA384: "sha384",
    HMAC_SHA512: "sha512",
}
_DIGEST_HASHES = {SHA1: "sha1", SHA256: "sha256", SHA384: "sha384", SHA512: "sha512"}
_C14N_METHODS = {C14N_10: False, C14N_10_WITH_COMMENTS: True}
_ID_ATTRIBUTES = ("Id", "ID", "id")
_XML_WHITESPACE = str.maketrans("", "", " \t\r\n")
_T = TypeVar("_T")


class VerificationReason(StrEnum):
    OK = "ok"
    REFERENCE_NOT_FOUND = "reference_not_found"
    DIGEST_MISMATCH = "digest_mismatch"
    SIGNATURE_MISMATCH = "signature_mismatch"
    WRONG_ALGORITHM = "wrong_algorithm"
    TRUNCATED_HMAC = "truncated_hmac"
    MALFORMED = "malformed"


@dataclass(frozen=True)
class VerificationResult:
    """What ``verify`` found: ``ok`` only when ``reason`` is ``VerificationReason.OK``.

    ``key_name`` is the ``ds:KeyName`` text as sent (None when absent), reported even when
    the signature fails so a check can compare it with the expected Signature-ID.
    ``signed_element`` is the element the Reference resolved to (None if it did not).
    """

    ok: bool
    reason: VerificationReason
    message: str
    key_name: str | None = None
    signed_element: etree._Element | None = None
    # The Signature the enveloped-signature transform cut out of the signed element: its
    # content is not covered by the digest.
    excluded: etree._Element | None = field(default=None, repr=False, compare=False)


def sign(
    element: etree._Element,
    key: bytes,
    key_id: bytes | None,
    *,
    parent: etree._Element | None = None,
    id_value: str | None = None,
    whole_document: bool = False,
    c14n_method: str = C14N_10,
    signature_method: str = HMAC_SHA256,
    digest_method: str = SHA256,
    hmac_output_length: int | None = None,
) -> etree._Element:
    """Sign ``element`` with HMAC under ``key``, put the ``ds:Signature`` in ``parent``.

    The Reference is ``URI="#<Id>"``: the element's ``Id``/``ID``/``id`` attribute, else an
    ``Id`` set to ``id_value`` (or a fresh random one). With ``whole_document`` it is
    ``URI=""`` and ``element`` must be the document element. ``key_id`` None leaves out
    ``ds:KeyInfo``. ``hmac_output_length`` (bits, a multiple of 8) truncates the HMAC and
    declares it, which the profile forbids. Returns the Signature element.
    """
    hmac_hash = _lookup(_HMAC_HASHES, signature_method, "SignatureMethod")
    digest_hash = _lookup(_DIGEST_HASHES, digest_method, "DigestMethod")
    with_comments = _lookup(_C14N_METHODS, c14n_method, "CanonicalizationMethod")
    if not key:
        raise InvalidEncoding("the HMAC key is empty")
    full_bits = hashlib.new(hmac_hash).digest_size * 8
    if hmac_output_length is not None and (
        hmac_output_length % 8 or not 0 < hmac_output_length <= full_bits
    ):
        raise InvalidEncoding(
            f"HMACOutputLength {hmac_output_length} is not a multiple of 8 in 8..{full_bits}"
        )
    if whole_document and element.getparent() is not None:
        raise CryptoError('URI="" signs the whole document: pass the document element')
    target = parent if parent is not None else element.getparent()
    if target is None:
        raise CryptoError("the signed element has no parent: pass parent= for the Signature")

    uri = "" if whole_document else "#" + _ensure_id(element, id_value)
    signature = etree.SubElement(target, _ds("Signature"), nsmap={"ds": DS_NS})
    enveloped = whole_document or is_inside(signature, element)
    signed_info = etree.SubElement(signature, _ds("SignedInfo"))
    etree.SubElement(signed_info, _ds("CanonicalizationMethod"), Algorithm=c14n_method)
    method = etree.SubElement(signed_info, _ds("SignatureMethod"), Algorithm=signature_method)
    if hmac_output_length is not None:
        etree.SubElement(method, _ds("HMACOutputLength")).text = str(hmac_output_length)
    reference = etree.SubElement(signed_info, _ds("Reference"), URI=uri)
    if enveloped:
        transforms = etree.SubElement(reference, _ds("Transforms"))
        etree.SubElement(transforms, _ds("Transform"), Algorithm=ENVELOPED_SIGNATURE)
    etree.SubElement(reference, _ds("DigestMethod"), Algorithm=digest_method)
    digest_value = etree.SubElement(reference, _ds("DigestValue"))
    signature_value = etree.SubElement(signature, _ds("SignatureValue"))
    if key_id is not None:
        signature.append(key_info_with_key_name(key_id))

    signed_octets = _canonical_reference(element, signature if enveloped else None, whole_document)
    digest_value.text = encode_base64(hashlib.new(digest_hash, signed_octets).digest())
    mac = hmac.new(key, canonical_subset(signed_info, with_comments=with_comments), hmac_hash)
    output_octets = (hmac_output_length or full_bits) // 8
    signature_value.text = encode_base64(mac.digest()[:output_octets])
    return signature


def verify(signature_element: etree._Element, key: bytes) -> VerificationResult:
    """Check ``signature_element`` (a ``ds:Signature``) against the profile and ``key``."""
    try:
        return _verify(signature_element, key)
    except _Failure as failure:
        return failure.result


def signature_covers(result: VerificationResult, element: etree._Element) -> bool:
    """True when ``result`` is a valid signature whose digest covers ``element``.

    Covered means: the signed element or one of its descendants, and not inside the
    Signature that an enveloped-signature transform removed. The tree must not have changed
    since ``verify``.
    """
    if not result.ok or result.signed_element is None:
        return False
    if result.excluded is not None and is_inside(element, result.excluded):
        return False
    return is_inside(element, result.signed_element)


def canonical_subset(element: etree._Element, *, with_comments: bool) -> bytes:
    """Canonical XML 1.0 of the document subset rooted at ``element``."""
    return _canonical_copy(element, with_comments=with_comments, excluded_path=None)


def key_info_with_key_name(key_id: bytes) -> etree._Element:
    """``ds:KeyInfo`` holding ``ds:KeyName`` = base64 of ``key_id`` (a TrK-ID or InK-ID)."""
    if not key_id:
        raise InvalidEncoding("the key ID is empty")
    key_info = etree.Element(_ds("KeyInfo"), nsmap={"ds": DS_NS})
    etree.SubElement(key_info, _ds("KeyName")).text = encode_base64(key_id)
    return key_info


def key_name_of(parent: etree._Element) -> str | None:
    """The text of ``parent``'s ``ds:KeyInfo/ds:KeyName`` (stripped), or None if absent."""
    key_name = parent.find(f"{_ds('KeyInfo')}/{_ds('KeyName')}")
    if key_name is None:
        return None
    return (key_name.text or "").strip()


def append_text_before(node: etree._Element, text: str | None) -> None:
    """Add ``text`` to the document text just before ``node`` (its sibling's tail or its
    parent's text), so it survives when ``node`` is removed or replaced."""
    if not text:
        return
    previous = node.getprevious()
    if previous is not None:
        previous.tail = (previous.tail or "") + text
        return
    parent = node.getparent()
    if parent is not None:
        parent.text = (parent.text or "") + text


def encode_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_base64(text: str | None, what: str) -> bytes:
    """Decode base64 element content, allowing the line breaks XML tools insert."""
    if text is None:
        raise InvalidEncoding(f"{what} is missing")
    compact = text.translate(_XML_WHITESPACE)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidEncoding(f"{what} is not valid base64") from None


class _Failure(Exception):
    def __init__(
        self,
        reason: VerificationReason,
        message: str,
        key_name: str | None,
        signed_element: etree._Element | None = None,
        excluded: etree._Element | None = None,
    ) -> None:
        super().__init__(message)
        self.result = VerificationResult(False, reason, message, key_name, signed_element, excluded)


def _verify(signature: etree._Element, key: bytes) -> VerificationResult:
    if signature.tag != _ds("Signature"):
        raise _Failure(VerificationReason.MALFORMED, f"{signature.tag!r} is not ds:Signature", None)
    key_name = key_name_of(signature)
    signed_info = _only_child(signature, "SignedInfo", key_name)
    signature_value_element = _only_child(signature, "SignatureValue", key_name)
    c14n = _only_child(signed_info, "CanonicalizationMethod", key_name)
    method = _only_child(signed_info, "SignatureMethod", key_name)
    reference = _only_child(signed_info, "Reference", key_name)
    digest_method = _only_child(reference, "DigestMethod", key_name)
    digest_value_element = _only_child(reference, "DigestValue", key_name)
    transforms = _transform_algorithms(reference, key_name)

    with_comments = _check_algorithm(c14n, _C14N_METHODS, key_name)
    _check_algorithm(method, {HMAC_SHA256: None}, key_name)
    _check_algorithm(digest_method, {SHA256: None}, key_name)
    _check_transforms(transforms, key_name)
    _check_output_length(method, key_name)
    digest_value = _decoded(
        digest_value_element, "DigestValue", VerificationReason.MALFORMED, key_name
    )
    # An undeclared short SignatureValue is a truncated HMAC all the same.
    signature_value = _decoded(
        signature_value_element, "SignatureValue", VerificationReason.TRUNCATED_HMAC, key_name
    )

    signed = _resolve(reference, signature, key_name)
    enveloped = ENVELOPED_SIGNATURE in transforms
    excluded = signature if enveloped and is_inside(signature, signed) else None
    uri = reference.get("URI")
    octets = _canonical_reference(signed, excluded, whole_document=uri == "")
    if not hmac.compare_digest(hashlib.sha256(octets).digest(), digest_value):
        raise _Failure(
            VerificationReason.DIGEST_MISMATCH,
            f'DigestValue does not match the canonical form of URI="{uri}"',
            key_name,
            signed,
            excluded,
        )
    mac = hmac.new(key, canonical_subset(signed_info, with_comments=with_comments), "sha256")
    if not hmac.compare_digest(mac.digest(), signature_value):
        raise _Failure(
            VerificationReason.SIGNATURE_MISMATCH,
            "SignatureValue is not the HMAC-SHA256 of SignedInfo under the given key",
            key_name,
            signed,
            excluded,
        )
    return VerificationResult(
        True,
        VerificationReason.OK,
        f'valid HMAC-SHA256 signature over URI="{uri}"',
        key_name,
        signed,
        excluded,
    )


def _only_child(parent: etree._Element, name: str, key_name: str | None) -> etree._Element:
    children = parent.findall(_ds(name))
    if len(children) != 1:
        raise _Failure(
            VerificationReason.MALFORMED,
            f"{_local(parent)} has {len(children)} ds:{name} children, expected exactly 1",
            key_name=key_name,
        )
    return children[0]


def _transform_algorithms(reference: etree._Element, key_name: str | None) -> list[str]:
    containers = reference.findall(_ds("Transforms"))
    if len(containers) > 1:
        raise _Failure(
            VerificationReason.MALFORMED,
            "Reference has more than one ds:Transforms",
            key_name=key_name,
        )
    transforms = containers[0].findall(_ds("Transform")) if containers else []
    return [_algorithm(transform, key_name) for transform in transforms]


def _check_algorithm(element: etree._Element, accepted: dict[str, _T], key_name: str | None) -> _T:
    algorithm = _algorithm(element, key_name)
    if algorithm not in accepted:
        profile = " or ".join(accepted)
        raise _Failure(
            VerificationReason.WRONG_ALGORITHM,
            f"{_local(element)} is {algorithm}, the profile requires {profile}",
            key_name=key_name,
        )
    return accepted[algorithm]


def _check_transforms(transforms: list[str], key_name: str | None) -> None:
    for position, algorithm in enumerate(transforms):
        if algorithm not in (ENVELOPED_SIGNATURE, *_C14N_METHODS):
            raise _Failure(
                VerificationReason.WRONG_ALGORITHM,
                f"Transform {algorithm} is not enveloped-signature or Canonical XML 1.0",
                key_name=key_name,
            )
        # After a canonicalization the data are octets; nothing in the profile follows it.
        if algorithm in _C14N_METHODS and position != len(transforms) - 1:
            raise _Failure(
                VerificationReason.MALFORMED,
                "a Canonical XML transform is followed by another transform",
                key_name=key_name,
            )


def _check_output_length(method: etree._Element, key_name: str | None) -> None:
    lengths = method.findall(_ds("HMACOutputLength"))
    if not lengths:
        return
    text = (lengths[0].text or "").strip()
    if len(lengths) > 1 or not text.isdecimal() or not text.isascii():
        raise _Failure(
            VerificationReason.MALFORMED,
            f"HMACOutputLength {text!r} is not a single bit count",
            key_name=key_name,
        )
    bits = int(text)
    if bits < HMAC_SHA256_BITS:
        raise _Failure(
            VerificationReason.TRUNCATED_HMAC,
            f"HMACOutputLength {bits} truncates HMAC-SHA256 (the profile requires 256 bits)",
            key_name=key_name,
        )
    if bits > HMAC_SHA256_BITS:
        raise _Failure(
            VerificationReason.MALFORMED,
            f"HMACOutputLength {bits} exceeds the 256 bits of HMAC-SHA256",
            key_name=key_name,
        )


def _decoded(
    element: etree._Element, name: str, when_short: VerificationReason, key_name: str | None
) -> bytes:
    try:
        octets = decode_base64(element.text or "", name)
    except InvalidEncoding as exc:
        raise _Failure(VerificationReason.MALFORMED, str(exc), key_name) from None
    if len(octets) == _SHA256_OCTETS:
        return octets
    reason = when_short if len(octets) < _SHA256_OCTETS else VerificationReason.MALFORMED
    raise _Failure(reason, f"{name} is {len(octets)} octets, SHA-256 gives 32", key_name)


def _resolve(
    reference: etree._Element, signature: etree._Element, key_name: str | None
) -> etree._Element:
    uri = reference.get("URI")
    if uri is None:
        raise _Failure(
            VerificationReason.MALFORMED, "Reference has no URI attribute", key_name=key_name
        )
    document = signature.getroottree()
    if uri == "":
        return document.getroot()
    if not uri.startswith("#") or len(uri) == 1 or "(" in uri:
        raise _Failure(
            VerificationReason.REFERENCE_NOT_FOUND,
            f'Reference URI="{uri}" is not a same-document "#Id" or "" reference',
            key_name=key_name,
        )
    id_value = uri[1:]
    matches = document.xpath("//*[@Id = $v or @ID = $v or @id = $v]", v=id_value)
    assert isinstance(matches, list)
    if not matches:
        raise _Failure(
            VerificationReason.REFERENCE_NOT_FOUND,
            f'no element with Id="{id_value}" in the document',
            key_name=key_name,
        )
    if len(matches) > 1:
        raise _Failure(
            VerificationReason.MALFORMED,
            f'{len(matches)} elements carry Id="{id_value}" (possible signature wrapping)',
            key_name=key_name,
        )
    found = matches[0]
    assert isinstance(found, etree._Element)
    return found


def _algorithm(element: etree._Element, key_name: str | None) -> str:
    algorithm = element.get("Algorithm")
    if algorithm is None:
        raise _Failure(
            VerificationReason.MALFORMED,
            f"{_local(element)} has no Algorithm attribute",
            key_name=key_name,
        )
    return algorithm


def _canonical_reference(
    signed: etree._Element, excluded: etree._Element | None, whole_document: bool
) -> bytes:
    # Same-document references "" and "#Id" select their node-set without comments
    # (XML Signature 1.1 section 4.4.3.3), whatever the canonicalization method says.
    excluded_path = _child_path(signed, excluded) if excluded is not None else None
    if whole_document:
        document = copy.deepcopy(signed.getroottree())
        _remove_at(document.getroot(), excluded_path)
        return etree.tostring(document, method="c14n", exclusive=False, with_comments=False)
    return _canonical_copy(signed, with_comments=False, excluded_path=excluded_path)


def _canonical_copy(
    element: etree._Element, *, with_comments: bool, excluded_path: list[int] | None
) -> bytes:
    # lxml-stubs declare str-only nsmap keys; lxml takes None for the default namespace.
    apex = etree.Element(element.tag, nsmap=cast(dict[str, str], element.nsmap))
    for ancestor in element.iterancestors():
        for name, value in _attributes(ancestor):
            if name.startswith(f"{{{XML_NS}}}") and apex.get(name) is None:
                apex.set(name, value)
    for name, value in _attributes(element):
        apex.set(name, value)
    apex.text = element.text
    for child in element:
        apex.append(copy.deepcopy(child))
    _remove_at(apex, excluded_path)
    return etree.tostring(
        apex.getroottree(), method="c14n", exclusive=False, with_comments=with_comments
    )


def _attributes(element: etree._Element) -> list[tuple[str, str]]:
    return [(str(name), str(value)) for name, value in element.items()]


def _child_path(ancestor: etree._Element, descendant: etree._Element) -> list[int]:
    path: list[int] = []
    node = descendant
    while node is not ancestor:
        parent = node.getparent()
        assert parent is not None
        path.append(parent.index(node))
        node = parent
    return path[::-1]


def _remove_at(root: etree._Element, path: list[int] | None) -> None:
    if not path:
        return
    node = root
    for index in path:
        node = node[index]
    parent = node.getparent()
    assert parent is not None
    # The text after the removed element is a sibling node the transform keeps.
    append_text_before(node, node.tail)
    parent.remove(node)


def _ensure_id(element: etree._Element, id_value: str | None) -> str:
    for name in _ID_ATTRIBUTES:
        existing = element.get(name)
        if existing is not None:
            if id_value is not None and id_value != existing:
                raise CryptoError(f'element already has {name}="{existing}", not "{id_value}"')
            return existing
    chosen = id_value if id_value is not None else "_" + secrets.token_hex(8)
    element.set("Id", chosen)
    return chosen


def _lookup(table: dict[str, _T], uri: str, what: str) -> _T:
    if uri not in table:
        raise UnsupportedAlgorithm(f"{what} {uri} is not supported")
    return table[uri]


def _ds(name: str) -> str:
    return f"{{{DS_NS}}}{name}"


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname
