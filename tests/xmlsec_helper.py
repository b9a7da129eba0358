"""libxmlsec1 (via the ``xmlsec`` PyPI package) as the independent implementation.

Imported unconditionally: the cross-checks must run, never skip. If the import fails with
"lxml & xmlsec libxml2 library version mismatch", lxml and xmlsec were built against
different libxml2 releases and pyproject.toml needs the matching pins.
"""

from __future__ import annotations

import xmlsec
from lxml import etree

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
XENC_NS = "http://www.w3.org/2001/04/xmlenc#"
AES128_GCM = "http://www.w3.org/2009/xmlenc11#aes128-gcm"
KW_AES128 = XENC_NS + "kw-aes128"
C14N_10 = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
C14N_10_WITH_COMMENTS = C14N_10 + "#WithComments"

_C14N_TRANSFORMS = {
    C14N_10: xmlsec.constants.TransformInclC14N,
    C14N_10_WITH_COMMENTS: xmlsec.constants.TransformInclC14NWithComments,
}


def encrypt_content(
    element: etree._Element,
    key: bytes,
    key_name: str,
    *,
    prefix: str = "xenc",
    algorithm: str = AES128_GCM,
) -> etree._Element:
    """libxmlsec1 encrypts the content of ``element`` (aes128-gcm unless told)."""
    encrypted_data = _template("EncryptedData", algorithm, key_name, prefix)
    encrypted_data.set("Type", XENC_NS + "Content")
    context = _encryption_context(key)
    result = context.encrypt_xml(encrypted_data, element)
    assert isinstance(result, etree._Element)
    return result


def decrypt(encrypted: etree._Element, key: bytes) -> etree._Element | bytes:
    """libxmlsec1 decrypts an EncryptedData in place (returns the parent) or an EncryptedKey
    (returns the key octets)."""
    context = _encryption_context(key)
    result = context.decrypt(encrypted)
    assert isinstance(result, (etree._Element, bytes))
    return result


def wrap_key_rfc3394(kek: bytes, data: bytes, key_name: str) -> etree._Element:
    """libxmlsec1 wraps ``data`` with kw-aes128 into an xenc:EncryptedKey."""
    # python-xmlsec only encrypts into EncryptedData; the children are the same as an
    # EncryptedKey's, so the wrap output is libxmlsec1's and only the tag is renamed.
    template = _template("EncryptedData", KW_AES128, key_name, "xenc")
    result = _encryption_context(kek).encrypt_binary(template, data)
    assert isinstance(result, etree._Element)
    result.tag = f"{{{XENC_NS}}}EncryptedKey"
    return result


def sign(
    element: etree._Element,
    key: bytes,
    key_name: str,
    *,
    parent: etree._Element | None = None,
    c14n: str = C14N_10,
    enveloped: bool = False,
    uri: str | None = None,
    prefix: str | None = "ds",
) -> bytes:
    """libxmlsec1 signs ``element`` (referenced by its Id) with HMAC-SHA256; returns the
    signed document as octets, the form a KMS sends.

    The tree libxmlsec1 edits in memory has element names lxml's ``find`` cannot match (they
    are not interned in the document's dictionary), so callers parse the octets instead.
    """
    target = parent if parent is not None else element.getparent()
    assert target is not None
    signature = xmlsec.template.create(
        target, _C14N_TRANSFORMS[c14n], xmlsec.constants.TransformHmacSha256, ns=prefix
    )
    target.append(signature)
    reference_uri = uri if uri is not None else "#" + element.get("Id", "")
    reference = xmlsec.template.add_reference(
        signature, xmlsec.constants.TransformSha256, uri=reference_uri
    )
    if enveloped:
        xmlsec.template.add_transform(reference, xmlsec.constants.TransformEnveloped)
    key_info = xmlsec.template.ensure_key_info(signature)
    xmlsec.template.add_key_name(key_info, key_name)
    context = _signature_context(key, element)
    context.sign(signature)
    return etree.tostring(target.getroottree())


def verify(signature: etree._Element, key: bytes, signed: etree._Element) -> bool:
    """True when libxmlsec1 accepts ``signature`` over ``signed`` under ``key``."""
    context = _signature_context(key, signed)
    try:
        context.verify(signature)
    except (xmlsec.VerificationError, xmlsec.Error):
        return False
    return True


def _encryption_context(key: bytes) -> xmlsec.EncryptionContext:
    context = xmlsec.EncryptionContext()
    context.key = xmlsec.Key.from_binary_data(xmlsec.constants.KeyDataAes, key)
    return context


def _signature_context(key: bytes, signed: etree._Element) -> xmlsec.SignatureContext:
    context = xmlsec.SignatureContext()
    context.key = xmlsec.Key.from_binary_data(xmlsec.constants.KeyDataHmac, key)
    if signed.get("Id") is not None:
        context.register_id(signed, "Id")
    return context


def _template(name: str, algorithm: str, key_name: str, prefix: str) -> etree._Element:
    # python-xmlsec has no GCM transform constant, so templates are written out; libxmlsec1
    # finds the transform by its Algorithm URI.
    template = etree.Element(f"{{{XENC_NS}}}{name}", nsmap={prefix: XENC_NS, "dsig": DS_NS})
    etree.SubElement(template, f"{{{XENC_NS}}}EncryptionMethod", Algorithm=algorithm)
    key_info = etree.SubElement(template, f"{{{DS_NS}}}KeyInfo")
    etree.SubElement(key_info, f"{{{DS_NS}}}KeyName").text = key_name
    cipher_data = etree.SubElement(template, f"{{{XENC_NS}}}CipherData")
    etree.SubElement(cipher_data, f"{{{XENC_NS}}}CipherValue")
    return template
