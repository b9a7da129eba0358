"""What is checked twice is computed once: public keys and per-KMS pairing tables.

A certificate cache repeats a KMS's PubEncKey/PubAuthKey, and every key set of a KMS is
validated against the same Z_T. These tests count the calls that reach the crypto layer and
make sure a cached verdict is never handed to a different key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.checks import CheckContext, certificate, keyset, run_check
from conformance.core.xmlsafe import parse_xml
from conformance.crypto import eccsi, sakke
from conformance.model.messages import KMS_NS, KmsCertificate, KmsInit, parse_response
from conformance.profiles import get_profile
from conformance.verdicts.outcomes import Outcome

KEYSETS = json.loads((Path(__file__).parent / "vectors" / "keysets.json").read_text())["keysets"]
STREAMWIDE = {k["name"]: k for k in KEYSETS if k["name"].startswith("streamwide-v5-")}


@pytest.fixture(autouse=True)
def cold_caches() -> Iterator[None]:
    caches = (
        certificate._pub_enc_key_valid,
        certificate._pub_auth_key_valid,
        keyset._rsk_valid,
        keyset._signing_keys_valid,
        sakke._public_key_is_valid,
        sakke._line_tables,
    )
    for cache in caches:
        cache.cache_clear()
    yield
    for cache in caches:
        cache.cache_clear()


def counting(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[bytes]:
    calls: list[bytes] = []
    real: Callable[..., Any] = getattr(module, name)

    def wrapper(*args: Any) -> Any:
        calls.append(args[0])
        return real(*args)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def cert_cache(keys: list[tuple[str, str]]) -> bytes:
    certs = "".join(
        f"""<KmsCertificate Role="External"><KmsUri>kms{n}.example.org</KmsUri>
        <UserIdFormat>2</UserIdFormat><UserKeyPeriod>2592000</UserKeyPeriod>
        <UserKeyOffset>0</UserKeyOffset><PubEncKey>{enc}</PubEncKey>
        <PubAuthKey>{auth}</PubAuthKey></KmsCertificate>"""
        for n, (enc, auth) in enumerate(keys, start=1)
    )
    return f"""<KmsResponse xmlns="{KMS_NS}"><KmsMessage><KmsCertCache Version="1.0.0">
      {certs}</KmsCertCache></KmsMessage></KmsResponse>""".encode()


def key_prov(vectors: list[dict[str, Any]]) -> bytes:
    sets = "".join(
        f"""<KmsKeySet><KmsUri>{v["KmsUri"]}</KmsUri><UserUri>{v["UserUri"]}</UserUri>
        <UserID>{v["UserID"]}</UserID><KeyPeriodNo>{v["KeyPeriodNo"]}</KeyPeriodNo>
        <UserDecryptKey>{v["RSK"]}</UserDecryptKey><UserSigningKeySSK>{v["SSK"]}</UserSigningKeySSK>
        <UserPubTokenPVT>{v["PVT"]}</UserPubTokenPVT></KmsKeySet>"""
        for v in vectors
    )
    return f"""<KmsResponse xmlns="{KMS_NS}"><KmsMessage><KmsKeyProv Version="1.0.0">
      {sets}</KmsKeyProv></KmsMessage></KmsResponse>""".encode()


def root_of(vector: dict[str, Any]) -> KmsCertificate:
    document = f"""<KmsResponse xmlns="{KMS_NS}"><KmsMessage><KmsInit>
      <KmsCertificate Role="Root"><KmsUri>{vector["KmsUri"]}</KmsUri>
      <UserIdFormat>2</UserIdFormat><UserKeyPeriod>{vector["period"]}</UserKeyPeriod>
      <UserKeyOffset>{vector["offset"]}</UserKeyOffset><PubEncKey>{vector["PubEncKey"]}</PubEncKey>
      <PubAuthKey>{vector["PubAuthKey"]}</PubAuthKey></KmsCertificate>
      </KmsInit></KmsMessage></KmsResponse>"""
    response = parse_response(parse_xml(document.encode()))
    assert response.kms_message is not None
    content = response.kms_message.content
    assert isinstance(content, KmsInit)
    return content.certificates[0]


def verdict(name: str, document: bytes, root: KmsCertificate | None = None) -> tuple[Outcome, str]:
    context = CheckContext(
        profile=get_profile("ts33180-r17"),
        response=parse_response(parse_xml(document)),
        init_certificate=root,
    )
    result = run_check(name, context)
    return result.outcome, result.message


def flip_last_digit(key: str) -> str:
    return key[:-1] + ("0" if key[-1] != "0" else "1")


# --- certificates ---------------------------------------------------------------------------


def test_a_key_repeated_in_many_certificates_is_validated_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    enc_calls = counting(monkeypatch, sakke, "validate_public_key")
    auth_calls = counting(monkeypatch, eccsi, "validate_public_auth_key")
    vector = STREAMWIDE["streamwide-v5-gms"]
    document = cert_cache([(vector["PubEncKey"], vector["PubAuthKey"])] * 20)
    assert verdict("certificate.pub-enc-key", document)[0] is Outcome.OK
    assert verdict("certificate.pub-auth-key", document)[0] is Outcome.OK
    assert verdict("certificate.pub-enc-key", document)[0] is Outcome.OK
    assert len(enc_calls) == 1 and len(auth_calls) == 1


def test_a_cached_verdict_is_not_given_to_a_different_key() -> None:
    good = STREAMWIDE["streamwide-v5-gms"]
    other = KEYSETS[0]
    keys = [(good["PubEncKey"], good["PubAuthKey"]), (other["PubEncKey"], other["PubAuthKey"])]
    assert verdict("certificate.pub-enc-key", cert_cache(keys))[0] is Outcome.OK
    broken = [*keys, (flip_last_digit(good["PubEncKey"]), flip_last_digit(good["PubAuthKey"]))]
    enc_outcome, enc_message = verdict("certificate.pub-enc-key", cert_cache(broken))
    auth_outcome, auth_message = verdict("certificate.pub-auth-key", cert_cache(broken))
    assert enc_outcome is Outcome.VIOLATION and "kms3.example.org" in enc_message
    assert auth_outcome is Outcome.VIOLATION and "kms3.example.org" in auth_message
    # ...and the broken key's verdict does not stick to the good one either.
    assert verdict("certificate.pub-enc-key", cert_cache(keys))[0] is Outcome.OK


# --- key sets ---------------------------------------------------------------------------------


def test_key_sets_of_one_kms_share_its_pairing_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    table_calls = counting(monkeypatch, sakke, "_line_table")
    vectors = [STREAMWIDE["streamwide-v5-gms"], STREAMWIDE["streamwide-v5-bob"]]
    for vector in vectors:
        vector_uid = bytes.fromhex(vector["UserID"])
        assert sakke.validate_rsk(
            bytes.fromhex(vector["PubEncKey"]), vector_uid, bytes.fromhex(vector["RSK"])
        )
    # One table for Z_T (P's table lives for the whole process and may be built already).
    z_point = sakke.decode_point(bytes.fromhex(vectors[0]["PubEncKey"]))
    assert [call for call in table_calls if call == z_point] == [z_point]


def test_a_wrong_rsk_is_caught_after_a_right_one_under_the_same_key() -> None:
    alice, bob = STREAMWIDE["streamwide-v5-alice"], STREAMWIDE["streamwide-v5-bob"]
    root = root_of(alice)
    assert verdict("keyset.sakke", key_prov([alice, bob]), root)[0] is Outcome.OK
    swapped = [alice, {**bob, "RSK": alice["RSK"]}]
    outcome, message = verdict("keyset.sakke", key_prov(swapped), root)
    assert outcome is Outcome.VIOLATION and message.startswith("key set 2:")
