"""TrK encryption and InK/TrK signature of responses (D.3.1 and the seed CR).

Encrypt first, then sign (kms-interface.md section 10.2), so the signature covers the
ciphertext and the TrK-ID element. The faults of the security area act here, each by
producing the wrong-but-plausible protection an implementation might send.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from lxml import etree

from conformance.xmlsec import xmldsig, xmlenc
from refkms.config import ProtectionPolicy
from refkms.domain import User
from refkms.faults import ActiveFaults
from refkms.messages import KeyWrapper, add_key_id, new_element, tag

AES128_CBC = xmlenc.XENC_NS + "aes128-cbc"
RESPONSE_ID = "kms-response"
EXTENSION_NS = "urn:example:kms-conformance:refkms"
_CBC_IV_OCTETS = 16


@dataclass(frozen=True)
class Protection:
    """Who the response is for and how the policy says to protect it."""

    user: User
    other_user: User
    policy: ProtectionPolicy
    key_id_elements: bool
    faults: ActiveFaults


def protect_response(response: etree._Element, protection: Protection) -> etree._Element:
    """Encrypt the KmsMessage content and sign the KmsResponse as the policy says."""
    message = response.find(tag("KmsMessage"))
    if message is not None and protection.policy.encryption == "message":
        _encrypt_message(response, message, protection)
    elif message is not None and protection.policy.encryption == "keys":
        _add_trk_id(response, protection.user.trk_id, protection)
    if message is None or not protection.policy.signing:
        return response
    return _sign(response, protection)


def key_wrapper(protection: Protection) -> KeyWrapper:
    """Per-key protection (EncKeyContentType): RFC 5649 wrap under the TrK."""
    user = protection.user
    kek = user.next_trk if protection.faults.on("keys-wrapped-wrong-key") else user.trk

    def wrap(value: bytes) -> etree._Element:
        return xmlenc.build_encrypted_key(kek, value, user.trk_id, xmlenc.KW_AES128_PAD)

    return wrap


def new_key_elements(protection: Protection) -> list[tuple[str, etree._Element]]:
    """NewTransportKey / NewIntegrityKey wrapped under the current TrK (REQ-081, REQ-108)."""
    user = protection.user
    delivered: list[tuple[str, etree._Element]] = []
    if protection.policy.rotate_trk:
        carried = _carried(user, user.next_trk, user.next_trk_id, protection.faults)
        delivered.append(("NewTransportKey", carried))
    if protection.policy.rotate_ink and user.next_ink is not None and user.next_ink_id:
        carried = _carried(user, user.next_ink, user.next_ink_id, protection.faults)
        delivered.append(("NewIntegrityKey", carried))
    return delivered


def _carried(user: User, key: bytes, key_id: bytes, faults: ActiveFaults) -> etree._Element:
    name = base64.b64encode(key_id).decode("ascii")
    # The UE can only unwrap under the TrK it holds; the fault wraps under the next one.
    kek = user.next_trk if faults.on("rotation-delivered-key-wrong-kek") else user.trk
    return xmlenc.build_encrypted_key(kek, key, user.trk_id, xmlenc.KW_AES128_PAD, name)


def _encrypt_message(
    response: etree._Element, message: etree._Element, protection: Protection
) -> None:
    faults, user = protection.faults, protection.user
    if faults.on("enc-plaintext-invalid"):
        nested = new_element("KmsMessage")
        nested.extend(list(message))
        message.append(nested)
    plaintext = b"".join(etree.tostring(child, encoding="utf-8") for child in message)
    key = user.next_trk if faults.on("enc-wrong-key") else user.trk
    trk_id = protection.other_user.trk_id if faults.on("enc-trkid-wrong") else user.trk_id
    if faults.on("rotation-new-trk-protects-delivery") and _delivers_trk(message):
        # Switches to the new TrK one response early: the UE cannot read the delivery.
        key, trk_id = user.next_trk, user.next_trk_id
    key_name = b"trk.0.stale" if faults.on("enc-keyinfo-differs") else trk_id
    encrypted = xmlenc.encrypt_content(message, key, key_name)
    if faults.on("enc-type-element"):
        encrypted.set("Type", xmlenc.TYPE_ELEMENT)
    if faults.on("enc-aes-cbc"):
        _recrypt_as_cbc(encrypted, key, plaintext)
    if faults.on("enc-gcm-tag-corrupted"):
        _flip_octet(_cipher_value(encrypted), -1)
    if not faults.on("enc-trkid-missing"):
        _add_trk_id(response, trk_id, protection)


def _delivers_trk(message: etree._Element) -> bool:
    return next(message.iter(tag("NewTransportKey")), None) is not None


def _recrypt_as_cbc(encrypted: etree._Element, key: bytes, plaintext: bytes) -> None:
    # XML Encryption 1.0 CBC: IV || ciphertext, the last padding octet giving the length,
    # which PKCS#7 padding satisfies.
    iv = os.urandom(_CBC_IV_OCTETS)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    method = encrypted.find(f"{{{xmlenc.XENC_NS}}}EncryptionMethod")
    if method is not None:
        method.set("Algorithm", AES128_CBC)
    _cipher_value(encrypted).text = base64.b64encode(iv + ciphertext).decode("ascii")


def _cipher_value(element: etree._Element) -> etree._Element:
    found = element.find(f"{{{xmlenc.XENC_NS}}}CipherData/{{{xmlenc.XENC_NS}}}CipherValue")
    if found is None:
        raise ValueError("EncryptedData without CipherValue")
    return found


def _add_trk_id(response: etree._Element, trk_id: bytes, protection: Protection) -> None:
    if protection.key_id_elements:
        add_key_id(response, "TrK-ID", trk_id)


def _sign(response: etree._Element, protection: Protection) -> etree._Element:
    faults, user = protection.faults, protection.user
    key, key_id = user.signing_key
    if faults.on("sig-trk-although-ink"):
        key, key_id = user.trk, user.trk_id
    signature_id = user.trk_id if faults.on("sig-id-wrong-key") else key_id
    if protection.key_id_elements and not faults.on("sig-id-missing"):
        add_key_id(response, "Signature-ID", signature_id)
    signed_root = new_element("SignedKmsResponse")
    signed_root.append(response)
    signed_element = response
    if faults.on("sig-not-covering-message"):
        signed_element = etree.SubElement(
            response, f"{{{EXTENSION_NS}}}Stamp", nsmap={"ext": EXTENSION_NS}
        )
        signed_element.text = "refkms"
    truncated = 128 if faults.on("sig-hmac-truncated") else None
    signature = xmldsig.sign(
        signed_element,
        key,
        key_id,
        parent=signed_root,
        id_value=RESPONSE_ID if signed_element is response else "stamp",
        hmac_output_length=truncated,
    )
    if faults.on("sig-value-corrupted"):
        value = signature.find(f"{{{xmldsig.DS_NS}}}SignatureValue")
        if value is not None:
            _flip_octet(value, 0)
    return signed_root


def _flip_octet(element: etree._Element, index: int) -> None:
    octets = bytearray(base64.b64decode(element.text or ""))
    octets[index] ^= 0x01
    element.text = base64.b64encode(bytes(octets)).decode("ascii")
