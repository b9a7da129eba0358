"""TrK encryption (message and per-key), InK/TrK signature and TrK/InK rotation (D.3.1)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from lxml import etree
from refkms_testkit import (
    NS,
    UE,
    XENC,
    RunningKms,
    find,
    kms_response,
    make_domain,
    parse,
    request_body,
    schema_for,
    serving,
    text,
)

from conformance.crypto import eccsi, sakke
from conformance.crypto.uid import decode_user_id
from conformance.xmlsec import xmldsig, xmlenc
from refkms.state import StateDir

XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


@pytest.fixture(scope="module")
def encrypting(state: StateDir) -> Iterator[RunningKms]:
    protection = {"encryption": "message", "signing": True, "rotate_trk": True, "rotate_ink": True}
    with serving(make_domain(state, protection=protection), state) as kms:
        yield kms


@pytest.fixture(scope="module")
def wrapping(state: StateDir) -> Iterator[RunningKms]:
    with serving(make_domain(state, protection={"encryption": "keys"}), state) as kms:
        yield kms


@pytest.mark.parametrize(
    "resource", ["init", "keyprov", "certcache", "lookup/sip%3Abob%40example.org"]
)
def test_message_encryption_under_the_trk(encrypting: RunningKms, resource: str) -> None:
    user = encrypting.user()
    root = parse(encrypting.post(resource))
    schema_for("ts33180-r17").validate(root)
    response = kms_response(root)
    encrypted = find(response, "k:KmsMessage/xenc:EncryptedData")
    info = xmlenc.parse_encrypted_data(encrypted)
    assert (info.type, info.algorithm) == (xmlenc.TYPE_CONTENT, xmlenc.AES128_GCM)
    assert base64.b64decode(info.key_name or "") == user.trk_id
    assert base64.b64decode(text(response, "k:TrK-ID")) == user.trk_id
    verified = xmldsig.verify(find(root, "ds:Signature"), user.ink)
    assert verified.ok and xmldsig.signature_covers(verified, encrypted)
    message = find(response, "k:KmsMessage")
    plaintext = xmlenc.decrypt_content(encrypted, user.trk)
    nodes = xmlenc.parse_plaintext_fragment(
        encrypted, plaintext, etree.XMLParser(resolve_entities=False)
    )
    message.remove(encrypted)
    message.extend(nodes)
    schema_for("ts33180-r17").validate(root)


def naming_trk(body: bytes, trk_id: bytes) -> bytes:
    request = etree.fromstring(body)
    etree.SubElement(request, f"{{{NS}}}TrK-ID").text = base64.b64encode(trk_id).decode()
    return etree.tostring(request)


def signed_with_ink(body: bytes, ink: bytes | None, ink_id: bytes | None) -> bytes:
    assert ink is not None and ink_id is not None
    request = etree.fromstring(body)
    etree.SubElement(request, f"{{{NS}}}Signature-ID").text = base64.b64encode(ink_id).decode()
    signed = etree.Element(f"{{{NS}}}SignedKmsRequest", nsmap={None: NS})  # type: ignore[dict-item]
    signed.append(request)
    xmldsig.sign(request, ink, ink_id, parent=signed, id_value="request")
    return etree.tostring(signed)


def test_an_unsigned_request_gets_a_new_trk_but_no_new_ink(encrypting: RunningKms) -> None:
    user = encrypting.user()
    body = naming_trk(request_body(encrypting, "init"), user.trk_id)
    response = kms_response(parse(encrypting.post("init", body)))
    encrypted = find(response, "k:KmsMessage/xenc:EncryptedData")
    plaintext = xmlenc.decrypt_content(encrypted, user.trk)
    assert b"NewTransportKey" in plaintext and b"NewIntegrityKey" not in plaintext


def test_a_request_naming_no_trk_gets_no_new_key(encrypting: RunningKms) -> None:
    user = encrypting.user()
    response = kms_response(parse(encrypting.post("init")))
    encrypted = find(response, "k:KmsMessage/xenc:EncryptedData")
    plaintext = xmlenc.decrypt_content(encrypted, user.trk)
    assert b"NewTransportKey" not in plaintext and b"NewIntegrityKey" not in plaintext


def test_rotation_delivers_new_keys_wrapped_under_the_trk(encrypting: RunningKms) -> None:
    user = encrypting.user()
    for resource, message_type in (("init", "KmsInitTkIkType"), ("keyprov", "KmsKeyProvTkIkType")):
        # Only a request naming the TrK the UE holds gets new keys (refkms.rotation).
        body = naming_trk(request_body(encrypting, resource), user.trk_id)
        # ... and a new InK only to a signed request (its Signature-ID names the InK).
        body = signed_with_ink(body, user.ink, user.ink_id)
        response = kms_response(parse(encrypting.post(resource, body)))
        encrypted = find(response, "k:KmsMessage/xenc:EncryptedData")
        (message,) = xmlenc.parse_plaintext_fragment(
            encrypted, xmlenc.decrypt_content(encrypted, user.trk), etree.XMLParser()
        )
        assert message.get(XSI_TYPE) == message_type
        new_trk = find(message, "k:NewTransportKey/xenc:EncryptedKey")
        new_ink = find(message, "k:NewIntegrityKey/xenc:EncryptedKey")
        assert xmlenc.open_encrypted_key(new_trk, user.trk) == user.next_trk
        assert xmlenc.open_encrypted_key(new_ink, user.trk) == user.next_ink
        carried = xmlenc.parse_encrypted_key(new_trk).carried_key_name or ""
        assert base64.b64decode(carried) == user.next_trk_id


def test_rotation_is_valid_against_the_3gpp_schema(state: StateDir) -> None:
    protection = {"encryption": "keys", "signing": True, "rotate_trk": True, "rotate_ink": True}
    with serving(make_domain(state, "ts33180-r16", protection=protection), state) as kms:
        for resource in ("init", "keyprov"):
            root = parse(kms.post(resource))
            schema_for("ts33180-r16").validate(root)
            assert kms_response(root).find(f"{{{NS}}}TrK-ID") is None


def test_per_key_wrapping_unwraps_to_valid_keys(wrapping: RunningKms) -> None:
    user = wrapping.user()
    certificate = find(
        kms_response(parse(wrapping.post("init"))), "k:KmsMessage/k:KmsInit/k:KmsCertificate"
    )
    root = parse(wrapping.post("keyprov"))
    schema_for("ts33180-r17").validate(root)
    key_set = find(kms_response(root), "k:KmsMessage/k:KmsKeyProv/k:KmsKeySet")
    keys = {}
    for name in ("UserDecryptKey", "UserSigningKeySSK", "UserPubTokenPVT"):
        element = find(key_set, f"k:{name}")
        assert element.get(XSI_TYPE) == "EncKeyContentType"
        encrypted_key = find(element, "xenc:EncryptedKey")
        assert xmlenc.parse_encrypted_key(encrypted_key).algorithm == xmlenc.KW_AES128_PAD
        keys[name] = xmlenc.open_encrypted_key(encrypted_key, user.trk)
    uid = decode_user_id(text(key_set, "k:UserID"))
    z = bytes.fromhex(text(certificate, "k:PubEncKey"))
    kpak = bytes.fromhex(text(certificate, "k:PubAuthKey"))
    assert eccsi.validate_signing_keys(
        kpak, uid, keys["UserSigningKeySSK"], keys["UserPubTokenPVT"]
    )
    assert sakke.validate_rsk(z, uid, keys["UserDecryptKey"])


def test_unprotected_response_has_no_key_ids(state: StateDir) -> None:
    with serving(
        make_domain(state, protection={"encryption": "none", "signing": False}), state
    ) as kms:
        response = parse(kms.post("keyprov", user_uri=UE))
    assert response.tag == f"{{{NS}}}KmsResponse"
    assert (
        response.find(f"{{{NS}}}TrK-ID") is None and response.find(f"{{{NS}}}Signature-ID") is None
    )
    assert response.find(f".//{{{XENC}}}EncryptedData") is None
