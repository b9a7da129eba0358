"""The security step: what protects a response, and the response as the UE reads it.

``unprotect`` looks at a parsed response as received (TS 33.180 D.1 and D.3.1 as changed
by the seed CR; kms-interface.md sections 9 and 10): the ``ds:Signature`` checked with the
user's InK and, separately, with the TrK; the ``TrK-ID`` and ``Signature-ID`` elements; an
``xenc:EncryptedData`` in ``KmsMessage`` opened with the TrK; every ``xenc:EncryptedKey``
of a key set and every ``NewTransportKey``/``NewIntegrityKey`` unwrapped with the TrK.
It returns the plaintext view (a separate model whose ``KeyContent.plaintext`` holds the
unwrapped keys, so the key-set checks validate them) and ``ProtectionFacts``, which the
``security.*`` checks judge. It decides nothing: every oddity, failed verification or
failed decryption is a recorded fact with a one-line reason, never an exception.

Facts hold key IDs, algorithm URIs, lengths and outcomes, never a key.
``EncryptionFacts.plaintext`` keeps the decrypted octets for the evidence writer, which
redacts the key material in them.
"""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from conformance.core.xmlsafe import hardened_parser, is_inside
from conformance.crypto import CryptoError, DecryptionError
from conformance.model.messages import (
    DS_NS,
    KEY_ELEMENTS,
    XENC_NS,
    XSI_NS,
    KmsInit,
    KmsKeyProv,
    KmsResponse,
    NotAKmsResponse,
    local_name,
    parse_response,
    qname_text,
    resolve_qname,
)
from conformance.profiles import Profile
from conformance.target.file import SymmetricKey, User
from conformance.xmlsec import xmldsig, xmlenc

# Lengths of the unwrapped key material (D.3.3.2, RFC 6507/6508; kms-interface.md 7.2).
KEY_OCTETS = {"UserDecryptKey": 257, "UserSigningKeySSK": 32, "UserPubTokenPVT": 65}
# HMAC-SHA256 key of a new InK when the harness holds no InK to compare with (D.1).
INK_OCTETS = 32
NEW_KEY_ELEMENTS = ("NewTransportKey", "NewIntegrityKey")


@dataclass(frozen=True)
class KeyVerification:
    """The signature checked with one of the user's keys ("ink" or "trk")."""

    key: str
    key_id: bytes
    ok: bool
    reason: str
    message: str
    covers_message: bool


@dataclass
class SignatureFacts:
    """What the ``ds:Signature`` says about itself and whether it verifies."""

    location: str  # "SignedKmsResponse", "KmsResponse" (enveloped) or "elsewhere"
    count: int = 1
    signature_method: str | None = None
    hmac_output_length: str | None = None
    signature_value_octets: int | None = None
    signature_value_error: str | None = None
    c14n_method: str | None = None
    digest_method: str | None = None
    reference_count: int = 0
    reference_uri: str | None = None
    transforms: tuple[str, ...] = ()
    # The element the Reference names, found without verifying anything (None: unresolved),
    # and whether KmsMessage lies inside it.
    reference_target: str | None = None
    reference_covers_message: bool | None = None
    key_name: str | None = None
    key_name_id: bytes | None = None
    key_name_error: str | None = None
    verifications: dict[str, KeyVerification] = field(default_factory=dict)

    def verified_with(self) -> list[str]:
        """The keys ("ink", "trk") the signature verifies with, InK first."""
        return [name for name in ("ink", "trk") if self._ok(name)]

    def _ok(self, name: str) -> bool:
        result = self.verifications.get(name)
        return result is not None and result.ok


@dataclass
class EncryptionFacts:
    """The ``xenc:EncryptedData`` standing for the content of ``KmsMessage``."""

    location: str  # "KmsMessage" (a child), "inside KmsMessage" (deeper), "outside KmsMessage"
    count: int = 1
    other_children: tuple[str, ...] = ()  # KmsMessage children beside the EncryptedData
    type: str | None = None
    algorithm: str | None = None
    key_name: str | None = None
    key_name_id: bytes | None = None
    key_name_error: str | None = None
    has_cipher_value: bool = False
    cipher_octets: int | None = None
    key_available: bool = False
    decrypted: bool = False
    error: str | None = None
    plaintext: bytes | None = field(default=None, repr=False)
    plaintext_error: str | None = None
    plaintext_elements: tuple[str, ...] = ()  # top-level elements of the plaintext, {ns}name
    plaintext_text: bool = False  # character data beside those elements


@dataclass(frozen=True)
class WrappedKeyFacts:
    """One ``xenc:EncryptedKey`` (key set key, NewTransportKey or NewIntegrityKey)."""

    location: str  # "KmsKeySet[1]/UserDecryptKey", "KmsInit/NewTransportKey[1]", ...
    element: str
    xsi_type: str | None
    message_xsi_type: str | None  # xsi:type of the enclosing KmsInit/KmsKeyProv
    has_encrypted_key: bool
    algorithm: str | None
    key_name: str | None
    expected_octets: int | None
    key_available: bool
    unwrapped: bool
    unwrapped_octets: int | None
    error: str | None


@dataclass
class ProtectionFacts:
    signature: SignatureFacts | None = None
    encryption: EncryptionFacts | None = None
    wrapped_keys: list[WrappedKeyFacts] = field(default_factory=list)
    trk_id_text: str | None = None
    trk_id: bytes | None = None
    trk_id_error: str | None = None
    signature_id_text: str | None = None
    signature_id: bytes | None = None
    signature_id_error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def signed(self) -> bool:
        return self.signature is not None

    @property
    def encrypted(self) -> bool:
        """Anything in the response is encrypted: the message or at least one key."""
        return self.encryption is not None or any(k.has_encrypted_key for k in self.wrapped_keys)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary for reports: IDs in base64, the plaintext by its length."""
        summary: dict[str, Any] = _plain(self)
        return summary


def unprotect(
    raw: KmsResponse, user: User | None, profile: Profile
) -> tuple[KmsResponse, ProtectionFacts]:
    """The plaintext view of ``raw`` and the facts of its protection; ``raw`` is unchanged."""
    facts = ProtectionFacts()
    facts.trk_id_text, facts.trk_id, facts.trk_id_error = _key_id_element(raw, "TrK-ID")
    facts.signature_id_text, facts.signature_id, facts.signature_id_error = _key_id_element(
        raw, "Signature-ID"
    )
    for name in ("TrK-ID", "Signature-ID"):
        if raw.counts.get(name, 0) > 1:
            facts.notes.append(f"{raw.counts[name]} {name} elements; the first is used")
    trk = user.trk if user else None
    ink = user.ink if user else None
    facts.signature = _signature_facts(raw, ink, trk)
    view = _decrypted_view(raw, _view(raw, facts), trk, facts)
    _unwrap_keys(view, trk, ink, facts)
    return view, facts


# -- signature --------------------------------------------------------------------------


def _signature_facts(
    raw: KmsResponse, ink: SymmetricKey | None, trk: SymmetricKey | None
) -> SignatureFacts | None:
    found = _find_signatures(raw)
    if found is None:
        return None
    location, signatures = found
    signature = signatures[0]
    facts = SignatureFacts(location=location, count=len(signatures))
    signed_info = signature.find(_ds("SignedInfo"))
    references = signed_info.findall(_ds("Reference")) if signed_info is not None else []
    method = _child(signed_info, "SignatureMethod")
    facts.signature_method = _algorithm(method)
    length = _child(method, "HMACOutputLength")
    facts.hmac_output_length = None if length is None else (length.text or "").strip()
    facts.c14n_method = _algorithm(_child(signed_info, "CanonicalizationMethod"))
    facts.reference_count = len(references)
    if references:
        reference = references[0]
        facts.reference_uri = reference.get("URI")
        facts.digest_method = _algorithm(_child(reference, "DigestMethod"))
        facts.transforms = tuple(
            t.get("Algorithm") or "" for t in reference.iterfind(f"{_ds('Transforms')}/*")
        )
        facts.reference_target, facts.reference_covers_message = _reference_scope(
            signature, facts.reference_uri, raw
        )
    value = signature.find(_ds("SignatureValue"))
    try:
        facts.signature_value_octets = len(
            xmldsig.decode_base64(None if value is None else value.text or "", "SignatureValue")
        )
    except CryptoError as exc:
        facts.signature_value_error = str(exc)
    facts.key_name = xmldsig.key_name_of(signature)
    if facts.key_name is not None:
        facts.key_name_id, facts.key_name_error = _decode_id(facts.key_name, "ds:KeyName")
    message = raw.kms_message.element if raw.kms_message else None
    for name, key in (("ink", ink), ("trk", trk)):
        if key is not None:
            facts.verifications[name] = _verify_with(signature, key, name, message)
    return facts


def _find_signatures(raw: KmsResponse) -> tuple[str, list[etree._Element]] | None:
    document = raw.root if raw.root is not None else raw.element
    if raw.signed and document is not raw.element:
        at_root = _element_children(document, DS_NS, "Signature")
        if at_root:
            return "SignedKmsResponse", at_root
    enveloped = _element_children(raw.element, DS_NS, "Signature")
    if enveloped:
        return "KmsResponse", enveloped
    # Signatures of SignedKmsCertificate inside KmsMessage sign certificates, not responses.
    message = raw.kms_message.element if raw.kms_message else None
    elsewhere = [
        s for s in document.iter(_ds("Signature")) if message is None or not is_inside(s, message)
    ]
    return ("elsewhere", elsewhere) if elsewhere else None


def _verify_with(
    signature: etree._Element, key: SymmetricKey, name: str, message: etree._Element | None
) -> KeyVerification:
    result = xmldsig.verify(signature, key.key.reveal())
    covers = message is not None and xmldsig.signature_covers(result, message)
    return KeyVerification(name, key.key_id, result.ok, str(result.reason), result.message, covers)


def _reference_scope(
    signature: etree._Element, uri: str | None, raw: KmsResponse
) -> tuple[str | None, bool | None]:
    document = signature.getroottree().getroot()
    if uri is None:
        return None, None
    if uri == "":
        target = document
    elif uri.startswith("#") and len(uri) > 1 and "(" not in uri:
        matches = [
            e
            for e in document.iter()
            if isinstance(e.tag, str) and uri[1:] in (e.get("Id"), e.get("ID"), e.get("id"))
        ]
        if len(matches) != 1:
            return None, None
        target = matches[0]
    else:
        return None, None
    message = raw.kms_message.element if raw.kms_message else None
    covers = None if message is None else is_inside(message, target)
    return local_name(target), covers


# -- encryption -------------------------------------------------------------------------


def _view(raw: KmsResponse, facts: ProtectionFacts) -> KmsResponse:
    """A parsed deep copy of ``raw``: the plaintext view is built on it, never on ``raw``."""
    document = copy.deepcopy(raw.root if raw.root is not None else raw.element)
    try:
        return parse_response(document, raw.namespace)
    except NotAKmsResponse as exc:  # cannot happen for a copy of a parsed response
        facts.notes.append(f"copy of the response did not parse: {exc}")
        return raw


def _decrypted_view(
    raw: KmsResponse,
    view: KmsResponse,
    trk: SymmetricKey | None,
    facts: ProtectionFacts,
) -> KmsResponse:
    found = _find_encrypted_data(raw)
    if found is None:
        return view
    location, encrypted, count = found
    facts.encryption = encryption = _encryption_facts(raw, location, encrypted, count)
    if trk is None:
        encryption.error = "no TrK for this user in the target file: content not decrypted"
        facts.notes.append(encryption.error)
        return view
    encryption.key_available = True
    if view is raw:
        return view
    target = _same_element(raw, encrypted, view)
    if target is None:
        encryption.error = "EncryptedData not found again in the copy of the response"
        return view
    # The plaintext is read as content even where Type says otherwise (security.enc-structure
    # judges Type), so the message behind it can still be checked.
    if target.get("Type") not in (None, xmlenc.TYPE_CONTENT):
        del target.attrib["Type"]
    try:
        plaintext = xmlenc.decrypt_content(target, trk.key.reveal())
    except DecryptionError:
        encryption.error = "AES-GCM tag does not verify with the TrK (wrong key or altered data)"
        return view
    except CryptoError as exc:
        encryption.error = str(exc)
        return view
    encryption.decrypted = True
    encryption.plaintext = plaintext
    parser = hardened_parser()
    try:
        nodes = xmlenc.parse_plaintext_fragment(target, plaintext, parser)
        encryption.plaintext_elements = tuple(qname_text(n) for n in nodes if _is_element(n))
        leading = _leading_text(plaintext)
        encryption.plaintext_text = bool(leading.strip()) or any(
            (n.tail or "").strip() for n in nodes
        )
        xmlenc.replace_with_plaintext(target, plaintext, hardened_parser())
    except CryptoError as exc:
        encryption.plaintext_error = str(exc)
        return view
    document = view.root if view.root is not None else view.element
    try:
        return parse_response(document, raw.namespace)
    except (NotAKmsResponse, ValueError) as exc:
        encryption.plaintext_error = f"decrypted response does not parse: {exc}"
        return view


def _find_encrypted_data(raw: KmsResponse) -> tuple[str, etree._Element, int] | None:
    message = raw.kms_message.element if raw.kms_message else None
    if message is not None:
        children = _element_children(message, XENC_NS, "EncryptedData")
        if children:
            return "KmsMessage", children[0], len(children)
        deeper = list(message.iter(_xenc("EncryptedData")))
        if deeper:
            return "inside KmsMessage", deeper[0], len(deeper)
    outside = list(raw.element.iter(_xenc("EncryptedData")))
    if outside:
        return "outside KmsMessage", outside[0], len(outside)
    return None


def _encryption_facts(
    raw: KmsResponse, location: str, encrypted: etree._Element, count: int
) -> EncryptionFacts:
    facts = EncryptionFacts(location=location, count=count)
    parent = encrypted.getparent()
    if location == "KmsMessage" and parent is not None:
        facts.other_children = tuple(
            qname_text(c) for c in parent if _is_element(c) and c is not encrypted
        )
    info = xmlenc.parse_encrypted_data(encrypted)
    facts.type, facts.algorithm, facts.key_name = info.type, info.algorithm, info.key_name
    if info.key_name is not None:
        facts.key_name_id, facts.key_name_error = _decode_id(info.key_name, "ds:KeyName")
    facts.has_cipher_value = info.cipher_value is not None
    if info.cipher_value is not None:
        try:
            facts.cipher_octets = len(info.cipher_octets())
        except CryptoError:
            facts.cipher_octets = None
    return facts


def _same_element(
    raw: KmsResponse, element: etree._Element, view: KmsResponse
) -> etree._Element | None:
    """The element of ``view``'s tree at the place ``element`` has in ``raw``'s tree."""
    raw_document = raw.root if raw.root is not None else raw.element
    view_document = view.root if view.root is not None else view.element
    path: list[int] = []
    node = element
    while node is not raw_document:
        parent = node.getparent()
        if parent is None:
            return None
        path.append(parent.index(node))
        node = parent
    found = view_document
    for index in reversed(path):
        if index >= len(found):
            return None
        found = found[index]
    return found if found.tag == element.tag else None


def _leading_text(plaintext: bytes) -> str:
    head = plaintext.split(b"<", 1)[0]
    return head.decode("utf-8", errors="replace")


# -- wrapped keys -----------------------------------------------------------------------


def _unwrap_keys(
    view: KmsResponse, trk: SymmetricKey | None, ink: SymmetricKey | None, facts: ProtectionFacts
) -> None:
    content = view.kms_message.content if view.kms_message else None
    if isinstance(content, KmsKeyProv):
        for index, key_set in enumerate(content.key_sets, start=1):
            for name in KEY_ELEMENTS:
                key = key_set.keys.get(name)
                if key is None:
                    continue
                xsi_type = key.xsi_type.local if key.xsi_type else None
                if key.encrypted_key is None and xsi_type != "EncKeyContentType":
                    continue
                wrapped, plaintext = _unwrap(
                    f"KmsKeySet[{index}]/{name}",
                    key.element,
                    message_type=None,
                    encrypted_key=key.encrypted_key,
                    expected=KEY_OCTETS[name],
                    trk=trk,
                )
                facts.wrapped_keys.append(wrapped)
                key.plaintext = plaintext
    if isinstance(content, KmsInit | KmsKeyProv):
        message_type = content.xsi_type.local if content.xsi_type else None
        owner = local_name(content.element)
        for name, elements in (
            ("NewTransportKey", content.new_transport_keys),
            ("NewIntegrityKey", content.new_integrity_keys),
        ):
            expected = _new_key_octets(name, trk, ink)
            for index, element in enumerate(elements, start=1):
                encrypted = _element_children(element, XENC_NS, "EncryptedKey")
                wrapped, _ = _unwrap(
                    f"{owner}/{name}[{index}]",
                    element,
                    message_type=message_type,
                    encrypted_key=encrypted[0] if encrypted else None,
                    expected=expected,
                    trk=trk,
                )
                facts.wrapped_keys.append(wrapped)


def _unwrap(
    location: str,
    element: etree._Element,
    *,
    message_type: str | None,
    encrypted_key: etree._Element | None,
    expected: int | None,
    trk: SymmetricKey | None,
) -> tuple[WrappedKeyFacts, bytes | None]:
    xsi_type = resolve_qname(element, element.get(f"{{{XSI_NS}}}type"))
    common: dict[str, Any] = {
        "location": location,
        "element": local_name(element),
        "xsi_type": xsi_type.local if xsi_type else None,
        "message_xsi_type": message_type,
        "expected_octets": expected,
        "key_available": trk is not None,
    }
    if encrypted_key is None:
        facts = WrappedKeyFacts(
            **common,
            has_encrypted_key=False,
            algorithm=None,
            key_name=None,
            unwrapped=False,
            unwrapped_octets=None,
            error="no xenc:EncryptedKey in the element",
        )
        return facts, None
    info = xmlenc.parse_encrypted_key(encrypted_key)
    plaintext: bytes | None = None
    error: str | None = None
    if trk is None:
        error = "no TrK for this user in the target file: not unwrapped"
    else:
        try:
            plaintext = xmlenc.open_encrypted_key(encrypted_key, trk.key.reveal())
        except DecryptionError:
            error = "does not unwrap with the TrK (integrity check fails: wrong key or altered)"
        except CryptoError as exc:
            error = f"does not unwrap with the TrK: {exc}"
    facts = WrappedKeyFacts(
        **common,
        has_encrypted_key=True,
        algorithm=info.algorithm,
        key_name=info.key_name,
        unwrapped=plaintext is not None,
        unwrapped_octets=None if plaintext is None else len(plaintext),
        error=error,
    )
    return facts, plaintext


def _new_key_octets(name: str, trk: SymmetricKey | None, ink: SymmetricKey | None) -> int | None:
    # A new key has the length of the key it replaces (the profile's algorithm is unchanged).
    if name == "NewTransportKey":
        return len(trk.key.reveal()) if trk else None
    return len(ink.key.reveal()) if ink else INK_OCTETS


# -- helpers ----------------------------------------------------------------------------


def _key_id_element(raw: KmsResponse, name: str) -> tuple[str | None, bytes | None, str | None]:
    text = raw.get(name)
    if text is None:
        return None, None, None
    decoded, error = _decode_id(text, name)
    return text, decoded, error


def _decode_id(text: str, what: str) -> tuple[bytes | None, str | None]:
    try:
        decoded = xmldsig.decode_base64(text, what)
    except CryptoError as exc:
        return None, str(exc)
    if not decoded:
        return None, f"{what} is empty"
    return decoded, None


def _element_children(element: etree._Element, namespace: str, name: str) -> list[etree._Element]:
    return [c for c in element if c.tag == f"{{{namespace}}}{name}"]


def _child(parent: etree._Element | None, name: str) -> etree._Element | None:
    return None if parent is None else parent.find(_ds(name))


def _algorithm(element: etree._Element | None) -> str | None:
    return None if element is None else element.get("Algorithm")


def _is_element(node: etree._Element) -> bool:
    return isinstance(node.tag, str)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {
            name: (len(v) if name == "plaintext" and v is not None else _plain(v))
            for name in value.__dataclass_fields__
            for v in (getattr(value, name),)
        }
    return value


def _ds(name: str) -> str:
    return f"{{{DS_NS}}}{name}"


def _xenc(name: str) -> str:
    return f"{{{XENC_NS}}}{name}"
