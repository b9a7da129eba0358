"""XML Encryption 1.1: AES-GCM content encryption and AES key wrap (kms-interface.md 9.3, 10.2).

Message encryption (TS 33.180 D.3.1 as changed by the seed CR): the content of
``KmsMessage`` becomes one ``xenc:EncryptedData`` with ``Type`` ``...xmlenc#Content``,
``EncryptionMethod`` ``http://www.w3.org/2009/xmlenc11#aes128-gcm``, ``ds:KeyInfo/ds:KeyName``
= base64 of the TrK-ID, and ``CipherValue`` = base64(IV (12 octets) || ciphertext ||
tag (16 octets)) without additional authenticated data (XML Encryption 1.1, section 5.2.4).

Per-key protection (``EncKeyContentType``): ``xenc:EncryptedKey`` with an AES key wrap,
RFC 3394 (``xmlenc#kw-aes128/192/256``, XML Encryption 1.1 section 5.6.2) or RFC 5649 with
padding (``xmlenc11#kw-aes-128-pad/-192-pad/-256-pad``, section 5.6.3).

Public API::

    encrypt_content(element, key, key_id, iv=None) -> xenc:EncryptedData element
    decrypt_content(encrypted_data, key) -> bytes (the plaintext XML fragment)
    parse_encrypted_data(element) -> EncryptedDataInfo
    parse_plaintext_fragment(encrypted_data, plaintext, parser) -> list of nodes
    replace_with_plaintext(encrypted_data, plaintext, parser) -> the former parent
    wrap_key(kek, data, algorithm_uri) -> bytes
    unwrap_key(kek, data, algorithm_uri) -> bytes
    build_encrypted_key(kek, key, kek_id, algorithm_uri, carried_key_name=None)
        -> xenc:EncryptedKey element
    parse_encrypted_key(element) -> EncryptedKeyInfo
    open_encrypted_key(encrypted_key_element, kek) -> bytes

Algorithms accepted by ``decrypt_content``: ``aes128-gcm`` (the one the CR says shall be
supported) and also ``aes192-gcm`` and ``aes256-gcm`` when the key has the length the URI
names, because the wire format is the same and a harness that can read the message reports
more than one that stops; ``parse_encrypted_data`` shows the algorithm so a check can still
flag anything but ``aes128-gcm``. ``encrypt_content`` always produces ``aes128-gcm``. A
missing ``Type`` is accepted (the CR says the element "may" carry it); any other ``Type``
is refused.

Errors: ``UnsupportedAlgorithm`` for an algorithm, ``Type`` or ``CipherReference`` this
layer does not implement; ``InvalidEncoding`` for a key, IV or key ID of the wrong length,
garbage base64, a ``CipherValue`` too short to hold IV and tag, or a plaintext that is not
a well-formed fragment; ``DecryptionError`` for a wrong key or corrupted data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_unwrap_with_padding,
    aes_key_wrap,
    aes_key_wrap_with_padding,
)
from lxml import etree

from conformance.crypto.errors import (
    DecryptionError,
    InvalidEncoding,
    UnsupportedAlgorithm,
)
from conformance.xmlsec.xmldsig import (
    DS_NS,
    append_text_before,
    decode_base64,
    encode_base64,
    key_info_with_key_name,
    key_name_of,
)

XENC_NS = "http://www.w3.org/2001/04/xmlenc#"
XENC11_NS = "http://www.w3.org/2009/xmlenc11#"

TYPE_CONTENT = XENC_NS + "Content"
TYPE_ELEMENT = XENC_NS + "Element"

AES128_GCM = XENC11_NS + "aes128-gcm"
AES192_GCM = XENC11_NS + "aes192-gcm"
AES256_GCM = XENC11_NS + "aes256-gcm"

KW_AES128 = XENC_NS + "kw-aes128"
KW_AES192 = XENC_NS + "kw-aes192"
KW_AES256 = XENC_NS + "kw-aes256"
KW_AES128_PAD = XENC11_NS + "kw-aes-128-pad"
KW_AES192_PAD = XENC11_NS + "kw-aes-192-pad"
KW_AES256_PAD = XENC11_NS + "kw-aes-256-pad"

GCM_IV_OCTETS = 12
GCM_TAG_OCTETS = 16

_GCM_KEY_OCTETS = {AES128_GCM: 16, AES192_GCM: 24, AES256_GCM: 32}
_RFC3394_KEK_OCTETS = {KW_AES128: 16, KW_AES192: 24, KW_AES256: 32}
_RFC5649_KEK_OCTETS = {KW_AES128_PAD: 16, KW_AES192_PAD: 24, KW_AES256_PAD: 32}
_RFC3394_MIN_KEY_OCTETS = 16
_RFC5649_MIN_WRAPPED_OCTETS = 16
_KEY_WRAP_BLOCK = 8


@dataclass(frozen=True)
class EncryptedDataInfo:
    """What an ``xenc:EncryptedData`` says about itself, as sent (None where absent).

    ``key_name`` and ``cipher_value`` are the element texts, still base64; ``key_id()``
    and ``cipher_octets()`` decode them.
    """

    type: str | None
    algorithm: str | None
    key_name: str | None
    cipher_value: str | None

    def key_id(self) -> bytes:
        return decode_base64(self.key_name, "ds:KeyName")

    def cipher_octets(self) -> bytes:
        return decode_base64(self.cipher_value, "CipherValue")


@dataclass(frozen=True)
class EncryptedKeyInfo:
    """What an ``xenc:EncryptedKey`` says about itself, as sent (None where absent)."""

    algorithm: str | None
    key_name: str | None
    cipher_value: str | None
    carried_key_name: str | None

    def key_id(self) -> bytes:
        return decode_base64(self.key_name, "ds:KeyName")

    def cipher_octets(self) -> bytes:
        return decode_base64(self.cipher_value, "CipherValue")


def encrypt_content(
    element: etree._Element, key: bytes, key_id: bytes, iv: bytes | None = None
) -> etree._Element:
    """Replace the content of ``element`` by its AES-128-GCM ``xenc:EncryptedData``.

    The plaintext is the content serialized as UTF-8, each child element carrying the
    namespace declarations in scope, so it also parses on its own. ``iv`` (12 octets) is
    for known-answer tests; leave it None otherwise, a repeated IV breaks GCM.
    """
    _check_length(key, _GCM_KEY_OCTETS[AES128_GCM], "the aes128-gcm key (TrK)")
    iv = os.urandom(GCM_IV_OCTETS) if iv is None else iv
    _check_length(iv, GCM_IV_OCTETS, "the AES-GCM IV")
    key_info = key_info_with_key_name(key_id)
    plaintext = escape(element.text or "", {"\r": "&#13;"}).encode("utf-8") + b"".join(
        etree.tostring(child, encoding="utf-8", with_tail=True) for child in element
    )
    cipher_value = iv + AESGCM(key).encrypt(iv, plaintext, None)

    for child in list(element):
        element.remove(child)
    element.text = None
    encrypted_data = etree.SubElement(
        element, _xenc("EncryptedData"), nsmap={"xenc": XENC_NS, "ds": DS_NS}, Type=TYPE_CONTENT
    )
    etree.SubElement(encrypted_data, _xenc("EncryptionMethod"), Algorithm=AES128_GCM)
    encrypted_data.append(key_info)
    _add_cipher_data(encrypted_data, cipher_value)
    return encrypted_data


def decrypt_content(encrypted_data: etree._Element, key: bytes) -> bytes:
    """Decrypt an ``xenc:EncryptedData`` of element content; returns the fragment octets."""
    info = parse_encrypted_data(encrypted_data)
    if info.type not in (None, TYPE_CONTENT):
        raise UnsupportedAlgorithm(f"EncryptedData Type {info.type} is not {TYPE_CONTENT}")
    if info.algorithm not in _GCM_KEY_OCTETS:
        raise UnsupportedAlgorithm(
            f"EncryptionMethod {info.algorithm} is not AES-GCM (expected {AES128_GCM})"
        )
    _check_length(key, _GCM_KEY_OCTETS[info.algorithm], f"the {_fragment(info.algorithm)} key")
    octets = _cipher_octets(encrypted_data, info.cipher_value)
    if len(octets) < GCM_IV_OCTETS + GCM_TAG_OCTETS:
        raise InvalidEncoding(
            f"CipherValue is {len(octets)} octets, shorter than IV (12) plus tag (16)"
        )
    iv, sealed = octets[:GCM_IV_OCTETS], octets[GCM_IV_OCTETS:]
    try:
        return AESGCM(key).decrypt(iv, sealed, None)
    except InvalidTag:
        raise DecryptionError("AES-GCM tag check failed: wrong key or altered data") from None


def parse_encrypted_data(element: etree._Element) -> EncryptedDataInfo:
    """Report an ``xenc:EncryptedData`` without decrypting it."""
    _check_tag(element, "EncryptedData")
    return EncryptedDataInfo(
        type=element.get("Type"),
        algorithm=_encryption_method(element),
        key_name=key_name_of(element),
        cipher_value=_cipher_value_text(element),
    )


def parse_plaintext_fragment(
    encrypted_data: etree._Element, plaintext: bytes, parser: etree.XMLParser
) -> list[etree._Element]:
    """Parse decrypted content as it would read in place of ``encrypted_data``.

    Content encryption may leave prefixes (or the default namespace) declared only on the
    ancestors, as libxmlsec1 does; the fragment is parsed inside a wrapper that declares
    the namespaces in scope at ``encrypted_data``'s parent. ``parser`` is the caller's
    hardened parser. Returns the top-level nodes (elements, comments, processing
    instructions), children of that wrapper; text between them is in their ``tail``, text
    before the first one is not returned (``replace_with_plaintext`` keeps it).
    """
    return list(_parse_in_context(encrypted_data, plaintext, parser))


def replace_with_plaintext(
    encrypted_data: etree._Element, plaintext: bytes, parser: etree.XMLParser
) -> etree._Element:
    """Put the decrypted content where ``encrypted_data`` was; returns its former parent.

    This is what a decryptor does with ``Type=...#Content`` (XML Encryption 1.1 section
    4.3), so the caller can read the message as if it had been sent in clear.
    """
    parent = encrypted_data.getparent()
    if parent is None:
        raise InvalidEncoding("EncryptedData has no parent to put the decrypted content in")
    wrapper = _parse_in_context(encrypted_data, plaintext, parser)
    nodes = list(wrapper)
    trailing = encrypted_data.tail or ""
    append_text_before(encrypted_data, (wrapper.text or "") + ("" if nodes else trailing))
    if nodes:
        nodes[-1].tail = (nodes[-1].tail or "") + trailing
    position = parent.index(encrypted_data)
    qnames = _qname_attributes(nodes)
    for offset, node in enumerate(nodes):
        parent.insert(position + offset, node)
    parent.remove(encrypted_data)
    _rebind_qname_attributes(qnames)
    return parent


_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def _qname_attributes(
    nodes: list[etree._Element],
) -> list[tuple[etree._Element, str | None, str]]:
    """Each xsi:type in the fragment, resolved while the fragment's own declarations hold.

    Moving the nodes into the document lets lxml drop a namespace declaration that the
    new ancestors also make under another prefix (say ``k:`` instead of the default); a
    QName in an attribute value (``xsi:type="KeyContentType"``) would then lose its
    namespace. It is resolved here and written back with a prefix valid at its new place.
    """
    found = []
    for node in nodes:
        if not isinstance(node.tag, str):
            continue
        for element in node.iter():
            value = element.get(_XSI_TYPE) if isinstance(element.tag, str) else None
            if value is None:
                continue
            prefix, _, local = value.strip().rpartition(":")
            namespace = element.nsmap.get(prefix or None)
            found.append((element, namespace, local))
    return found


def _rebind_qname_attributes(qnames: list[tuple[etree._Element, str | None, str]]) -> None:
    for element, namespace, local in qnames:
        if namespace is None:
            continue
        in_scope = element.nsmap
        if in_scope.get(None) == namespace:
            element.set(_XSI_TYPE, local)
            continue
        prefixes = sorted(p for p, uri in in_scope.items() if uri == namespace and p)
        if prefixes:
            element.set(_XSI_TYPE, f"{prefixes[0]}:{local}")


def wrap_key(kek: bytes, data: bytes, algorithm_uri: str) -> bytes:
    """AES key wrap of ``data`` under ``kek`` (RFC 3394 or RFC 5649 by ``algorithm_uri``)."""
    padded = _key_wrap_variant(kek, algorithm_uri)
    if padded:
        if not data:
            raise InvalidEncoding("RFC 5649 key wrap needs at least one octet to wrap")
        return aes_key_wrap_with_padding(kek, data)
    if len(data) < _RFC3394_MIN_KEY_OCTETS or len(data) % _KEY_WRAP_BLOCK:
        raise InvalidEncoding(
            f"RFC 3394 key wrap ({_fragment(algorithm_uri)}) takes a multiple of 8 octets, "
            f"at least 16; got {len(data)} (use the -pad variant)"
        )
    return aes_key_wrap(kek, data)


def unwrap_key(kek: bytes, data: bytes, algorithm_uri: str) -> bytes:
    """Undo ``wrap_key``; ``DecryptionError`` when the integrity check fails."""
    padded = _key_wrap_variant(kek, algorithm_uri)
    minimum = _RFC5649_MIN_WRAPPED_OCTETS if padded else _RFC3394_MIN_KEY_OCTETS + 8
    if len(data) < minimum or len(data) % _KEY_WRAP_BLOCK:
        raise InvalidEncoding(
            f"wrapped key of {len(data)} octets: {_fragment(algorithm_uri)} gives a multiple "
            f"of 8 octets, at least {minimum}"
        )
    try:
        if padded:
            return aes_key_unwrap_with_padding(kek, data)
        return aes_key_unwrap(kek, data)
    except InvalidUnwrap:
        raise DecryptionError(
            f"{_fragment(algorithm_uri)} unwrap failed: wrong KEK or altered data"
        ) from None


def build_encrypted_key(
    kek: bytes,
    key: bytes,
    kek_id: bytes,
    algorithm_uri: str,
    carried_key_name: str | None = None,
) -> etree._Element:
    """``xenc:EncryptedKey`` carrying ``key`` wrapped under ``kek`` (named by ``kek_id``)."""
    wrapped = wrap_key(kek, key, algorithm_uri)
    encrypted_key = etree.Element(_xenc("EncryptedKey"), nsmap={"xenc": XENC_NS, "ds": DS_NS})
    etree.SubElement(encrypted_key, _xenc("EncryptionMethod"), Algorithm=algorithm_uri)
    encrypted_key.append(key_info_with_key_name(kek_id))
    _add_cipher_data(encrypted_key, wrapped)
    if carried_key_name is not None:
        etree.SubElement(encrypted_key, _xenc("CarriedKeyName")).text = carried_key_name
    return encrypted_key


def parse_encrypted_key(element: etree._Element) -> EncryptedKeyInfo:
    """Report an ``xenc:EncryptedKey`` without unwrapping it."""
    _check_tag(element, "EncryptedKey")
    carried = element.find(_xenc("CarriedKeyName"))
    return EncryptedKeyInfo(
        algorithm=_encryption_method(element),
        key_name=key_name_of(element),
        cipher_value=_cipher_value_text(element),
        carried_key_name=None if carried is None else (carried.text or ""),
    )


def open_encrypted_key(encrypted_key_element: etree._Element, kek: bytes) -> bytes:
    """Unwrap the key an ``xenc:EncryptedKey`` carries, with the algorithm it names."""
    info = parse_encrypted_key(encrypted_key_element)
    if info.algorithm is None:
        raise UnsupportedAlgorithm("EncryptedKey has no EncryptionMethod Algorithm")
    _key_wrap_variant(kek, info.algorithm)
    wrapped = _cipher_octets(encrypted_key_element, info.cipher_value)
    return unwrap_key(kek, wrapped, info.algorithm)


def _parse_in_context(
    encrypted_data: etree._Element, plaintext: bytes, parser: etree.XMLParser
) -> etree._Element:
    parent = encrypted_data.getparent()
    in_scope = parent.nsmap if parent is not None else {}
    declarations = "".join(
        f" xmlns={quoteattr(uri)}" if prefix is None else f" xmlns:{prefix}={quoteattr(uri)}"
        for prefix, uri in in_scope.items()
    )
    # The fragment cannot close the wrapper early: only misc may follow a root element.
    document = f"<fragment{declarations}>".encode() + plaintext + b"</fragment>"
    try:
        wrapper = etree.fromstring(document, parser)
    except (etree.XMLSyntaxError, ValueError) as exc:
        message = " ".join(str(exc).split())
        raise InvalidEncoding(
            f"decrypted content is not a well-formed fragment: {message}"
        ) from None
    if wrapper is None:
        raise InvalidEncoding("decrypted content did not parse to a fragment")
    return wrapper


def _key_wrap_variant(kek: bytes, algorithm_uri: str) -> bool:
    """True for RFC 5649 (padding), False for RFC 3394; checks the KEK length."""
    for padded, table in ((False, _RFC3394_KEK_OCTETS), (True, _RFC5649_KEK_OCTETS)):
        if algorithm_uri in table:
            _check_length(kek, table[algorithm_uri], f"the {_fragment(algorithm_uri)} KEK")
            return padded
    raise UnsupportedAlgorithm(f"key wrap algorithm {algorithm_uri} is not supported")


def _cipher_octets(element: etree._Element, cipher_value: str | None) -> bytes:
    if (
        cipher_value is None
        and element.find(f"{_xenc('CipherData')}/{_xenc('CipherReference')}") is not None
    ):
        raise UnsupportedAlgorithm("CipherReference is not supported, only CipherValue")
    return decode_base64(cipher_value, "CipherValue")


def _encryption_method(element: etree._Element) -> str | None:
    method = element.find(_xenc("EncryptionMethod"))
    return None if method is None else method.get("Algorithm")


def _cipher_value_text(element: etree._Element) -> str | None:
    value = element.find(f"{_xenc('CipherData')}/{_xenc('CipherValue')}")
    return None if value is None else (value.text or "").strip()


def _add_cipher_data(parent: etree._Element, octets: bytes) -> None:
    cipher_data = etree.SubElement(parent, _xenc("CipherData"))
    etree.SubElement(cipher_data, _xenc("CipherValue")).text = encode_base64(octets)


def _check_tag(element: etree._Element, name: str) -> None:
    if element.tag != _xenc(name):
        raise InvalidEncoding(f"{element.tag!r} is not xenc:{name}")


def _check_length(value: bytes, octets: int, what: str) -> None:
    if len(value) != octets:
        raise InvalidEncoding(f"{what} must be {octets} octets, got {len(value)}")


def _fragment(uri: str) -> str:
    return uri.rpartition("#")[2]


def _xenc(name: str) -> str:
    return f"{{{XENC_NS}}}{name}"
