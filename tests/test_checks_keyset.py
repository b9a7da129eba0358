"""Key-set checks: pass on published valid key sets, fail on the known-bad peer sample."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from conformance.checks import REGISTRY, CheckContext, run_check
from conformance.core.xmlsafe import parse_xml
from conformance.model.messages import KMS_NS, KmsCertificate, KmsInit, KmsResponse, parse_response
from conformance.profiles import get_profile
from conformance.verdicts.outcomes import Outcome

PEER = Path(os.environ["KMS_CONFORMANCE_SHARED"]) / "peer-samples" / "streamwide-sw_mikey_sakke"
VECTORS = Path(__file__).parent / "vectors" / "keysets.json"
KEYSET_CHECKS = [n for n in REGISTRY if n.startswith(("keyset.", "keyprov."))]


def certificate_of(response: KmsResponse) -> KmsCertificate:
    assert response.kms_message is not None
    init = response.kms_message.content
    assert isinstance(init, KmsInit)
    return init.certificates[0]


def response_for(vector: dict[str, object], *, user_id: str, mutate: str = "") -> bytes:
    body = f"""<KmsResponse xmlns="{KMS_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <UserUri>{vector["UserUri"]}</UserUri><KmsUri>{vector["KmsUri"]}</KmsUri>
  <Time>2026-01-01T00:00:00Z</Time><ClientReqUrl>/keymanagement/identity/v1/keyprov</ClientReqUrl>
  <KmsMessage><KmsKeyProv Version="1.0.0"><KmsKeySet Version="1.1.0">
    <KmsUri>{vector["KmsUri"]}</KmsUri><UserUri>{vector["UserUri"]}</UserUri>
    <UserID>{user_id}</UserID><KeyPeriodNo>{vector["KeyPeriodNo"]}</KeyPeriodNo>
    <UserDecryptKey xsi:type="KeyContentType">{vector["RSK"]}</UserDecryptKey>
    <UserSigningKeySSK xsi:type="KeyContentType">{vector["SSK"]}</UserSigningKeySSK>
    <UserPubTokenPVT xsi:type="KeyContentType">{vector["PVT"]}</UserPubTokenPVT>
  </KmsKeySet></KmsKeyProv></KmsMessage></KmsResponse>"""
    if mutate:
        old, new = mutate.split("=>")
        body = body.replace(old, new, 1)
    return body.encode()


def certificate_for(vector: dict[str, object]) -> KmsCertificate:
    doc = f"""<KmsResponse xmlns="{KMS_NS}"><KmsMessage><KmsInit><KmsCertificate Role="Root">
      <KmsUri>{vector["KmsUri"]}</KmsUri><UserIdFormat>2</UserIdFormat>
      <UserKeyPeriod>{vector["period"]}</UserKeyPeriod><UserKeyOffset>{vector["offset"]}</UserKeyOffset>
      <PubEncKey>{vector["PubEncKey"]}</PubEncKey><PubAuthKey>{vector["PubAuthKey"]}</PubAuthKey>
    </KmsCertificate></KmsInit></KmsMessage></KmsResponse>"""
    return certificate_of(parse_response(parse_xml(doc.encode())))


def outcomes(response: bytes, cert: KmsCertificate, user: str) -> dict[str, tuple[Outcome, str]]:
    ctx = CheckContext(
        profile=get_profile("ts33180-r17"),
        response=parse_response(parse_xml(response)),
        init_certificate=cert,
        expected_user_uri=user,
    )
    results = {name: run_check(name, ctx) for name in KEYSET_CHECKS}
    return {name: (r.outcome, r.message) for name, r in results.items()}


def streamwide_gms() -> dict[str, object]:
    sets = json.loads(VECTORS.read_text())
    found = [s for s in sets["keysets"] if str(s["UserUri"]).startswith("gms@")]
    return dict(found[0])


def test_published_key_set_passes_every_key_check() -> None:
    vector = streamwide_gms()
    user_id = bytes.fromhex(str(vector["UserID"]))
    response = response_for(vector, user_id=base64.b64encode(user_id).decode())
    results = outcomes(response, certificate_for(vector), str(vector["UserUri"]))
    bad = {n: r for n, r in results.items() if r[0] in (Outcome.VIOLATION, Outcome.WARNING)}
    assert not bad


@pytest.mark.parametrize(
    ("mutate", "check", "words"),
    [
        ("<KeyPeriodNo>236=><KeyPeriodNo>237", "keyset.uid", "not the Annex F UID"),
        (
            '"KeyContentType">2e7237=>"KeyContentType">2f7237',
            "keyset.eccsi",
            "ECCSI validation fails",
        ),
        (
            '<UserDecryptKey xsi:type="KeyContentType">=><UserDecryptKey>',
            "keyset.xsi-type",
            "no xsi:type",
        ),
        (
            "</KmsUri><UserUri>gms@=></KmsUri><UserUri>gms2@",
            "keyset.user-uri",
            "expected gms@",
        ),
    ],
)
def test_one_changed_value_is_caught_by_its_check(mutate: str, check: str, words: str) -> None:
    vector = streamwide_gms()
    response = response_for(vector, user_id=str(vector["UserID"]), mutate=mutate)
    outcome, message = outcomes(response, certificate_for(vector), str(vector["UserUri"]))[check]
    assert outcome is Outcome.VIOLATION
    assert words in message


def test_streamwide_keyprov_sample_fails_key_validation_and_xsi_type() -> None:
    init = parse_response(parse_xml((PEER / "test_init_response.xml").read_bytes()))
    response = (PEER / "test_key_prov_response.xml").read_bytes()
    results = outcomes(response, certificate_of(init), "alice@org.com")
    for name, words in (
        ("keyset.eccsi", "ECCSI validation fails"),
        ("keyset.sakke", "RSK validation fails"),
        ("keyset.xsi-type", "no xsi:type"),
    ):
        outcome, message = results[name]
        assert outcome is Outcome.VIOLATION and words in message
    assert results["keyset.uid"][0] is Outcome.OK
