"""The model reads real responses by name and survives misplaced or repeated elements."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conformance.core.xmlsafe import parse_xml
from conformance.model.messages import (
    KMS_NS,
    KmsInit,
    KmsKeyProv,
    NotAKmsResponse,
    QName,
    parse_response,
)

PEER = Path(os.environ["KMS_CONFORMANCE_SHARED"]) / "peer-samples" / "streamwide-sw_mikey_sakke"


def load(name: str) -> bytes:
    return (PEER / name).read_bytes()


def test_streamwide_init_response() -> None:
    response = parse_response(parse_xml(load("test_init_response.xml")))
    assert response.get("UserUri") == "alice@org.com"
    assert response.get(
        "ClientReqUrl",
    ).endswith("/init")  # type: ignore[union-attr]
    assert response.kms_message is not None
    init = response.kms_message.content
    assert isinstance(init, KmsInit)
    assert init.xsi_type == QName(KMS_NS, "KmsInitTkIkType")
    (cert,) = init.certificates
    assert cert.role == "Root" and cert.kms_uri == "localhost:8080"
    assert cert.get("UserKeyPeriod") == "2592000"
    assert len(cert.get("PubEncKey") or "") == 514


def test_streamwide_key_prov_response_without_xsi_type() -> None:
    response = parse_response(parse_xml(load("test_key_prov_response.xml")))
    assert response.kms_message is not None
    prov = response.kms_message.content
    assert isinstance(prov, KmsKeyProv)
    (key_set,) = prov.key_sets
    assert key_set.get("KeyPeriodNo") == "625"
    ssk = key_set.keys["UserSigningKeySSK"]
    assert ssk.xsi_type is None and len(ssk.text) == 64


def test_prefixes_order_and_duplicates_do_not_break_parsing() -> None:
    doc = f"""<k:SignedKmsResponse xmlns:k="{KMS_NS}" xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
      <k:KmsResponse Id="r1">
        <k:KmsUri>kms.example.org</k:KmsUri>
        <k:UserUri>sip:a@example.org</k:UserUri>
        <k:UserUri>sip:b@example.org</k:UserUri>
        <x:Ext xmlns:x="urn:example:ext"><k:KmsUri>ignored</k:KmsUri></x:Ext>
        <k:KmsError><k:ErrorCode>404</k:ErrorCode><k:ErrorMsg>no</k:ErrorMsg></k:KmsError>
      </k:KmsResponse>
      <ds:Signature/>
    </k:SignedKmsResponse>""".encode()
    response = parse_response(parse_xml(doc))
    assert response.signed and response.signature is not None
    assert response.get("UserUri") == "sip:a@example.org"
    assert response.counts["UserUri"] == 2
    assert response.get("KmsUri") == "kms.example.org"
    assert response.kms_error is not None and response.kms_error.error_code == "404"
    assert response.kms_message is None


def test_other_roots_are_refused_with_the_name() -> None:
    with pytest.raises(NotAKmsResponse, match="KmsResponse"):
        parse_response(parse_xml(b'<KmsResponse xmlns="urn:wrong"/>'))
