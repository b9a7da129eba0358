"""Every request type answers a schema-valid KmsResponse whose keys validate (issue 3 item 7)."""

from __future__ import annotations

import base64

import pytest
from refkms_testkit import (
    NS,
    UE,
    RunningKms,
    find,
    kms_response,
    parse,
    request_body,
    schema_for,
    text,
)

from conformance.crypto import eccsi, sakke
from conformance.crypto.uid import decode_user_id, mikey_sakke_uid
from conformance.xmlsec import xmldsig

PARTNER = "kms.partner1.example.net"
# 2014-02-23T08:39:14Z, kms-interface.md section 3.2: key period 1389.
TIME_SEGMENT = "D6B4323200000000"
UE_SEGMENT = "sip%3Auser%40example.org"

REQUESTS = {
    "init": ("init", "KmsInit"),
    "keyprov": ("keyprov", "KmsKeyProv"),
    "keyprov-uri": (f"keyprov/{UE_SEGMENT}", "KmsKeyProv"),
    "keyprov-uri-time": (f"keyprov/{UE_SEGMENT}/{TIME_SEGMENT}", "KmsKeyProv"),
    "certcache": ("certcache", "KmsCertCache"),
    "certcache-current": ("certcache/3", "KmsCertCache"),
    "certcache-older": ("certcache/1", "KmsCertCache"),
    "cert-own": ("cert/kms.example.org", "KmsCertCache"),
    "cert-partner": (f"cert/{PARTNER}", "KmsCertCache"),
    "lookup": ("lookup/sip%3Auser1%40partner1.example.net", "KmsLookup"),
}


@pytest.mark.parametrize("request_type", sorted(REQUESTS))
def test_r17_response_is_schema_valid(r17: RunningKms, request_type: str) -> None:
    resource, message = REQUESTS[request_type]
    response = r17.post(resource)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert response.headers["cache-control"] == "no-store"
    schema_for("ts33180-r17").validate(parse(response))
    envelope = kms_response(parse(response))
    assert find(envelope, f"k:KmsMessage/k:{message}") is not None
    assert text(envelope, "k:ClientReqUrl") == f"{r17.base_url}/{resource}"


@pytest.mark.parametrize("request_type", sorted(set(REQUESTS) - {"lookup"}))
def test_r16_response_is_valid_against_the_3gpp_schema(r16: RunningKms, request_type: str) -> None:
    resource, message = REQUESTS[request_type]
    response = r16.post(resource)
    assert response.status_code == 200
    root = parse(response)
    schema_for("ts33180-r16").validate(root)
    envelope = kms_response(root)
    assert find(envelope, f"k:KmsMessage/k:{message}") is not None
    assert envelope.find(f"{{{NS}}}Signature-ID") is None


def test_r16_has_no_lookup(r16: RunningKms) -> None:
    response = r16.post("lookup/sip%3Auser1%40partner1.example.net")
    assert response.status_code == 404
    schema_for("ts33180-r16").validate(parse(response))


@pytest.mark.parametrize("profile", ["ts33180-r16", "ts33180-r17"])
def test_error_responses_are_schema_valid(r16: RunningKms, r17: RunningKms, profile: str) -> None:
    kms = r16 if profile == "ts33180-r16" else r17
    for response in (kms.post("cert/kms.unknown.example"), kms.post("init", authorize=False)):
        root = parse(response)
        schema_for(profile).validate(root)
        assert text(root, "k:KmsError/k:ErrorCode") == str(response.status_code)


def test_signature_uses_the_ink_and_names_it(r17: RunningKms) -> None:
    root = parse(r17.post("keyprov"))
    user = r17.user()
    signature = find(root, "ds:Signature")
    assert xmldsig.verify(signature, user.ink).ok
    assert not xmldsig.verify(signature, user.trk).ok
    assert base64.b64decode(text(root, "k:KmsResponse/k:Signature-ID")) == user.ink_id
    assert xmldsig.signature_covers(
        xmldsig.verify(signature, user.ink), find(root, "k:KmsResponse/k:KmsMessage")
    )


def test_user_without_ink_gets_trk_signature(r17: RunningKms) -> None:
    carol = "sip:carol@example.org"
    root = parse(r17.post("init", user_uri=carol))
    assert xmldsig.verify(find(root, "ds:Signature"), r17.user(carol).trk).ok
    assert base64.b64decode(text(root, "k:KmsResponse/k:Signature-ID")) == r17.user(carol).trk_id


@pytest.mark.parametrize(
    ("resource", "period_no"), [("keyprov", 1388), (f"keyprov/{UE_SEGMENT}/{TIME_SEGMENT}", 1389)]
)
def test_issued_keys_validate(r17: RunningKms, resource: str, period_no: int) -> None:
    init = kms_response(parse(r17.post("init")))
    z = bytes.fromhex(text(init, "k:KmsMessage/k:KmsInit/k:KmsCertificate/k:PubEncKey"))
    kpak = bytes.fromhex(text(init, "k:KmsMessage/k:KmsInit/k:KmsCertificate/k:PubAuthKey"))
    assert sakke.validate_public_key(z)
    assert eccsi.validate_public_auth_key(kpak)
    key_set = find(kms_response(parse(r17.post(resource))), "k:KmsMessage/k:KmsKeyProv/k:KmsKeySet")
    uid = decode_user_id(text(key_set, "k:UserID"))
    assert int(text(key_set, "k:KeyPeriodNo")) == period_no
    assert uid == mikey_sakke_uid(UE, "kms.example.org", 2592000, 0, period_no)
    rsk, ssk, pvt = (
        bytes.fromhex(text(key_set, f"k:{name}"))
        for name in ("UserDecryptKey", "UserSigningKeySSK", "UserPubTokenPVT")
    )
    assert eccsi.validate_signing_keys(kpak, uid, ssk, pvt)
    assert sakke.validate_rsk(z, uid, rsk)


def test_section_18_1_key_set_through_the_api(r17: RunningKms, keyset_18_1: dict[str, str]) -> None:
    root = kms_response(parse(r17.post("keyprov")))
    assert text(root, "k:Time") == "2014-01-26T10:07:14Z"
    certificate = find(
        kms_response(parse(r17.post("init"))), "k:KmsMessage/k:KmsInit/k:KmsCertificate"
    )
    assert text(certificate, "k:PubEncKey").lower() == keyset_18_1["PubEncKey"]
    assert text(certificate, "k:PubAuthKey").lower() == keyset_18_1["PubAuthKey"]
    key_set = find(root, "k:KmsMessage/k:KmsKeyProv/k:KmsKeySet")
    assert text(key_set, "k:KeyPeriodNo") == keyset_18_1["KeyPeriodNo"]
    assert decode_user_id(text(key_set, "k:UserID")).hex() == keyset_18_1["UserID"]
    assert text(key_set, "k:UserDecryptKey").lower() == keyset_18_1["RSK"]
    assert text(key_set, "k:UserSigningKeySSK").lower() == keyset_18_1["SSK"]
    assert text(key_set, "k:UserPubTokenPVT").lower() == keyset_18_1["PVT"]


def test_rsk_is_stable_between_calls(r17: RunningKms) -> None:
    first, second = (
        text(
            kms_response(parse(r17.post("keyprov"))),
            "k:KmsMessage/k:KmsKeyProv/k:KmsKeySet/k:UserDecryptKey",
        )
        for _ in range(2)
    )
    assert first == second


def test_certcache_current_number_is_empty_with_same_cache_num(r17: RunningKms) -> None:
    full = find(kms_response(parse(r17.post("certcache"))), "k:KmsMessage/k:KmsCertCache")
    current = find(
        kms_response(parse(r17.post(f"certcache/{full.get('CacheNum')}"))),
        "k:KmsMessage/k:KmsCertCache",
    )
    assert len(full) == 2 and {c.get("Role") for c in full} == {"External"}
    assert len(current) == 0 and current.get("CacheNum") == full.get("CacheNum")


def test_partner_certificates_carry_real_keys(r17: RunningKms) -> None:
    cache = find(kms_response(parse(r17.post(f"cert/{PARTNER}"))), "k:KmsMessage/k:KmsCertCache")
    (certificate,) = cache
    assert text(certificate, "k:KmsUri") == PARTNER
    assert sakke.validate_public_key(bytes.fromhex(text(certificate, "k:PubEncKey")))
    assert eccsi.validate_public_auth_key(bytes.fromhex(text(certificate, "k:PubAuthKey")))


def test_lookup_names_the_partner_kms(r17: RunningKms) -> None:
    lookup = find(
        kms_response(parse(r17.post("lookup/sip%3Auser1%40partner1.example.net"))),
        "k:KmsMessage/k:KmsLookup",
    )
    assert [child.text for child in lookup] == ["sip:user1@partner1.example.net", PARTNER]


def test_redirect_upload_answers_no_content(r17: RunningKms) -> None:
    body = request_body(r17, "redirect", krr=True)
    response = r17.post("redirect", body)
    assert response.status_code == 204
    assert response.content == b""
