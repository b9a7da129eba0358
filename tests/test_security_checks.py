"""The security.* checks against the reference KMS over loopback HTTPS.

Compliant responses, in every protection mode, never violate a security check; every
security fault of the reference KMS, and crafted edits of real responses for the rules no
fault reaches, make the named check fail with a message that names the problem.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import ssl
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

sys.path.insert(0, str(Path(__file__).resolve().parent / "refkms"))
from refkms_testkit import BOB, CAROL, UE, make_domain, serving

from conformance.checks import REGISTRY, CheckContext, run_check
from conformance.core.xmlsafe import parse_xml
from conformance.model.messages import DS_NS, KMS_NS, XENC_NS, XSI_NS, parse_response
from conformance.profiles import get_profile
from conformance.protection.response import unprotect
from conformance.run.offline import check_file
from conformance.target.file import Target, User, load_target
from conformance.verdicts.outcomes import CheckResult, Outcome
from conformance.xmlsec import xmldsig, xmlenc
from refkms.state import StateDir
from refkms.target import target_description, write_target

SECURITY_CHECKS = (
    "security.expected-protection",
    "security.sig-algorithm",
    "security.sig-verifies",
    "security.sig-covers-message",
    "security.sig-digest-c14n",
    "security.sig-id",
    "security.sig-ink-over-trk",
    "security.ids-absent-when-unprotected",
    "security.claims-verify",
    "security.enc-structure",
    "security.enc-algorithm",
    "security.enc-trk-id",
    "security.enc-keyinfo",
    "security.enc-plaintext",
    "security.key-wrap",
    "security.new-keys",
)
RESOURCES = {
    "init": "init",
    "keyprov": "keyprov",
    "certcache": "certcache",
    "lookup": "lookup/sip%3Abob%40example.org",
}
SIGNED_PLAIN = {"encryption": "none", "signing": True}
MESSAGE = {"encryption": "message", "signing": True}
KEYS = {"encryption": "keys", "signing": True}
ROTATING = {"rotate_trk": True, "rotate_ink": True}
_counter = itertools.count()


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> StateDir:
    return StateDir(tmp_path_factory.mktemp("refkms-security"))


class Kms:
    """A running reference KMS seen only through its target.toml and HTTPS."""

    def __init__(self, target: Target, client: httpx.Client) -> None:
        self.target = target
        self.client = client
        self.profile = get_profile(target.profile.release)

    def user(self, uri: str = UE) -> User:
        return next(u for u in self.target.users if u.uri == uri)

    def fetch(self, kind: str, uri: str = UE) -> bytes:
        user = self.user(uri)
        assert user.token is not None
        url = f"{self.target.target.base_url}/{RESOURCES[kind]}"
        response = self.client.post(
            url,
            content=self._naming_request(user, url),
            headers={
                "Authorization": f"Bearer {user.token.text()}",
                "Content-Type": "application/xml",
            },
        )
        assert response.status_code == 200, response.text[:300]
        return response.content

    def _naming_request(self, user: User, url: str) -> bytes:
        """A signed KmsRequest naming the user's TrK (the reference KMS delivers new keys
        only to a UE that says which keys it holds); empty where it does not rotate."""
        if not self.target.pics.tk_ik_delivery or user.trk is None:
            return b""
        ns = self.profile.namespace
        request = etree.Element(f"{{{ns}}}KmsRequest", nsmap={None: ns}, Version="1.1.0")  # type: ignore[dict-item]
        now = "2014-01-26T10:07:14Z"  # the reference KMS's fixed clock (refkms_testkit)
        for name, value in (
            ("UserUri", user.uri),
            ("KmsUri", self.target.pixit.kms_uri or ""),
            ("Time", now),
            ("ClientReqUrl", url),
            ("TrK-ID", user.trk.key_id_b64),
        ):
            etree.SubElement(request, f"{{{ns}}}{name}").text = value
        # Signed with the InK (else the TrK): a new InK goes only to a signed request.
        key = user.ink or user.trk
        etree.SubElement(request, f"{{{ns}}}Signature-ID").text = key.key_id_b64
        signed = etree.Element(f"{{{ns}}}SignedKmsRequest", nsmap={None: ns})  # type: ignore[dict-item]
        signed.append(request)
        xmldsig.sign(request, key.key.reveal(), key.key_id, parent=signed, id_value="request")
        return etree.tostring(signed)

    def evaluate(
        self, body: bytes | etree._Element, kind: str, uri: str = UE, **changes: Any
    ) -> dict[str, CheckResult]:
        """Every security check on one response, as the engine would run them."""
        root = parse_xml(body) if isinstance(body, bytes) else body
        raw = parse_response(root, self.profile.namespace)
        before = etree.tostring(root)
        user = self.user(uri)
        view, facts = unprotect(raw, user, self.profile)
        assert etree.tostring(root) == before, "unprotect changed the response as received"
        context = CheckContext(
            profile=self.profile,
            request_type=kind,
            response=view,
            raw=raw,
            user=user,
            target=replace(self.target, **changes) if changes else self.target,
            protection=facts,
        )
        return {name: run_check(name, context) for name in SECURITY_CHECKS}


@contextmanager
def reference_kms(
    state: StateDir,
    protection: dict[str, Any],
    faults: tuple[str, ...] = (),
    profile: str = "ts33180-r17",
) -> Iterator[Kms]:
    domain = make_domain(state, profile, faults=faults, protection=protection)
    with serving(domain, state) as running:
        tls = state.tls()
        target_file = state.path / f"target-{next(_counter)}.toml"
        write_target(target_file, target_description(domain, running.base_url, tls.ca_file))
        target = load_target(target_file)
        assert target.target.ca_file is not None
        context = ssl.create_default_context(cafile=str(target.target.ca_file))
        with httpx.Client(verify=context, timeout=30) as client:
            yield Kms(target, client)


def test_every_security_check_is_registered_with_its_requirements() -> None:
    registered = sorted(n for n in REGISTRY if n.startswith("security."))
    assert registered == sorted(SECURITY_CHECKS)
    assert REGISTRY["security.sig-ink-over-trk"].reqs == ("REQ-063",)
    assert REGISTRY["security.new-keys"].reqs == ("REQ-081", "REQ-108")
    assert REGISTRY["security.sig-digest-c14n"].severity_on_violation is Outcome.WARNING


R17 = "ts33180-r17"
MODES = [
    pytest.param({"encryption": "none", "signing": False}, R17, id="plain"),
    pytest.param(SIGNED_PLAIN, R17, id="signed"),
    pytest.param(MESSAGE | ROTATING, R17, id="message-signed-rotating"),
    pytest.param({"encryption": "message", "signing": False}, R17, id="message-unsigned"),
    pytest.param(KEYS | ROTATING, R17, id="keys-signed-rotating"),
    pytest.param({"encryption": "keys", "signing": False}, R17, id="keys-unsigned"),
    # The r16 schema has no TrK-ID/Signature-ID elements: the ID checks step aside.
    pytest.param(MESSAGE | ROTATING, "ts33180-r16", id="r16-message-signed-rotating"),
]


@pytest.mark.parametrize(("protection", "profile"), MODES)
def test_compliant_responses_pass_every_security_check(
    state: StateDir, protection: dict[str, Any], profile: str
) -> None:
    seen_ok: set[str] = set()
    with reference_kms(state, protection, profile=profile) as kms:
        kinds = [k for k in RESOURCES if k != "lookup" or kms.profile.has_lookup]
        for uri, kind in itertools.product((UE, CAROL), kinds):
            results = kms.evaluate(kms.fetch(kind, uri), kind, uri)
            for name, result in results.items():
                where = f"{name} on {kind} for {uri}: {result.message}"
                assert result.outcome in (Outcome.OK, Outcome.SKIPPED), where
                assert result.message, where
                if result.outcome is Outcome.OK:
                    seen_ok.add(name)
    assert "security.expected-protection" in seen_ok
    if protection["signing"]:
        assert {"security.sig-verifies", "security.sig-ink-over-trk"} <= seen_ok
        assert ("security.sig-id" in seen_ok) == (profile == R17)
    if protection["encryption"] == "message":
        assert {"security.enc-algorithm", "security.enc-plaintext"} <= seen_ok
    if protection["encryption"] == "keys":
        assert "security.key-wrap" in seen_ok
    if protection.get("rotate_trk") and profile == R17:
        # Only a request naming the UE's TrK (TrK-ID: Rel-17) gets new keys from refkms.
        assert "security.new-keys" in seen_ok


FAULTS = [
    (
        "sig-trk-although-ink",
        SIGNED_PLAIN,
        {
            "security.sig-ink-over-trk": (
                "signed with the TrK although an InK is provisioned (REQ-063)"
            ),
            "security.sig-id": "Signature-ID names the TrK",
        },
    ),
    (
        "sig-id-wrong-key",
        SIGNED_PLAIN,
        {
            "security.sig-id": "Signature-ID names the TrK, expected the InK-ID",
            "security.sig-verifies": "does not verify with the TrK named by Signature-ID",
            "security.claims-verify": "Signature-ID names the TrK, but the signature does not",
        },
    ),
    ("sig-id-missing", SIGNED_PLAIN, {"security.sig-id": "without a Signature-ID element"}),
    (
        "sig-hmac-truncated",
        SIGNED_PLAIN,
        {
            "security.sig-algorithm": "HMACOutputLength 128 truncates HMAC-SHA256",
            "security.sig-verifies": "HMACOutputLength 128 truncates",
        },
    ),
    (
        "sig-not-covering-message",
        SIGNED_PLAIN,
        {"security.sig-covers-message": 'does not cover KmsMessage: Reference URI="#stamp"'},
    ),
    (
        "sig-value-corrupted",
        SIGNED_PLAIN,
        {
            "security.sig-verifies": "does not verify with the InK named by Signature-ID",
            "security.claims-verify": "the signature does not verify with it",
        },
    ),
    (
        "enc-wrong-key",
        MESSAGE,
        {
            "security.enc-algorithm": "does not decrypt with the TrK: AES-GCM tag does not verify",
            "security.enc-plaintext": "KmsMessage does not decrypt",
            "security.claims-verify": "TrK-ID is present, but KmsMessage does not decrypt",
        },
    ),
    ("enc-trkid-missing", MESSAGE, {"security.enc-trk-id": "has no TrK-ID element"}),
    (
        "enc-trkid-wrong",
        MESSAGE,
        {
            "security.enc-trk-id": "is not the user's TrK-ID",
            "security.enc-keyinfo": "is not the user's TrK-ID",
        },
    ),
    (
        "enc-keyinfo-differs",
        MESSAGE,
        {"security.enc-keyinfo": "differs from the TrK-ID element"},
    ),
    (
        "enc-type-element",
        MESSAGE,
        {"security.enc-structure": f"Type is {xmlenc.TYPE_ELEMENT}, not {xmlenc.TYPE_CONTENT}"},
    ),
    (
        "enc-aes-cbc",
        MESSAGE,
        {"security.enc-algorithm": f"EncryptionMethod is {XENC_NS}aes128-cbc, not aes128-gcm"},
    ),
    (
        "enc-gcm-tag-corrupted",
        MESSAGE,
        {
            "security.enc-algorithm": "AES-GCM tag does not verify with the TrK",
            "security.enc-plaintext": "does not decrypt",
        },
    ),
    (
        "enc-plaintext-invalid",
        MESSAGE,
        {"security.enc-plaintext": "decrypted content is KmsMessage, expected exactly one"},
    ),
    (
        "keys-wrapped-wrong-key",
        KEYS,
        {"security.key-wrap": "KmsKeySet[1]/UserDecryptKey: does not unwrap with the TrK"},
    ),
]


@pytest.mark.parametrize(
    ("fault", "protection", "expected"), FAULTS, ids=[fault for fault, _, _ in FAULTS]
)
def test_each_security_fault_is_caught_by_its_check(
    state: StateDir, fault: str, protection: dict[str, Any], expected: dict[str, str]
) -> None:
    with reference_kms(state, protection, faults=(fault,)) as kms:
        results = kms.evaluate(kms.fetch("keyprov"), "keyprov")
    for name, words in expected.items():
        result = results[name]
        assert result.outcome is REGISTRY[name].severity_on_violation, (name, result)
        assert words in result.message, (name, result.message)
        assert "\n" not in result.message


# -- crafted responses for the rules no fault reaches ------------------------------------


@pytest.fixture(scope="module")
def plain_kms(state: StateDir) -> Iterator[Kms]:
    with reference_kms(state, {"encryption": "none", "signing": False}) as kms:
        yield kms


@pytest.fixture(scope="module")
def message_kms(state: StateDir) -> Iterator[Kms]:
    with reference_kms(state, MESSAGE | ROTATING) as kms:
        yield kms


@pytest.fixture(scope="module")
def keys_kms(state: StateDir) -> Iterator[Kms]:
    with reference_kms(state, KEYS | ROTATING) as kms:
        yield kms


def signed(kms: Kms, body: bytes, **sign_options: Any) -> etree._Element:
    """An unsigned response signed here with the user's InK, Signature-ID included."""
    response = parse_xml(body)
    ink = kms.user().ink
    assert ink is not None
    etree.SubElement(response, f"{{{KMS_NS}}}Signature-ID").text = ink.key_id_b64
    root = etree.Element(f"{{{KMS_NS}}}SignedKmsResponse", nsmap={None: KMS_NS})  # type: ignore[dict-item]
    root.append(response)
    xmldsig.sign(response, ink.key.reveal(), ink.key_id, parent=root, **sign_options)
    return root


def first(root: etree._Element, path: str) -> etree._Element:
    found = root.find(path, {"k": KMS_NS, "ds": DS_NS, "xenc": XENC_NS})
    assert found is not None, path
    return found


def assert_fails(results: dict[str, CheckResult], name: str, words: str) -> None:
    result = results[name]
    assert result.outcome is REGISTRY[name].severity_on_violation, (name, result)
    assert words in result.message, (name, result.message)


def test_sha1_digest_and_exclusive_c14n_are_warned(plain_kms: Kms) -> None:
    body = plain_kms.fetch("init")
    results = plain_kms.evaluate(signed(plain_kms, body, digest_method=xmldsig.SHA1), "init")
    assert_fails(results, "security.sig-digest-c14n", f"DigestMethod is {xmldsig.SHA1}")
    root = signed(plain_kms, body)
    exclusive = "http://www.w3.org/2001/10/xml-exc-c14n#"
    first(root, "ds:Signature/ds:SignedInfo/ds:CanonicalizationMethod").set("Algorithm", exclusive)
    results = plain_kms.evaluate(root, "init")
    assert_fails(results, "security.sig-digest-c14n", f"CanonicalizationMethod is {exclusive}")
    assert results["security.sig-verifies"].outcome is Outcome.VIOLATION


def test_a_response_signed_here_passes_and_other_hmacs_fail(plain_kms: Kms) -> None:
    body = plain_kms.fetch("keyprov")
    results = plain_kms.evaluate(signed(plain_kms, body), "keyprov")
    assert all(r.outcome in (Outcome.OK, Outcome.SKIPPED) for r in results.values()), results
    results = plain_kms.evaluate(
        signed(plain_kms, body, signature_method=xmldsig.HMAC_SHA512), "keyprov"
    )
    assert_fails(results, "security.sig-algorithm", f"SignatureMethod is {xmldsig.HMAC_SHA512}")


def test_kms_message_changed_after_signing_does_not_verify(state: StateDir) -> None:
    with reference_kms(state, SIGNED_PLAIN) as kms:
        root = parse_xml(kms.fetch("init"))
        issuer = first(root, "k:KmsResponse/k:KmsMessage/k:KmsInit/k:KmsCertificate/k:Issuer")
        issuer.text = "www.attacker.example"
        results = kms.evaluate(root, "init")
    assert_fails(results, "security.sig-verifies", "DigestValue does not match")
    assert_fails(results, "security.claims-verify", "the signature does not verify with it")
    assert results["security.sig-covers-message"].outcome is Outcome.OK


def test_key_ids_without_protection_are_warned(plain_kms: Kms) -> None:
    response = parse_xml(plain_kms.fetch("init"))
    etree.SubElement(response, f"{{{KMS_NS}}}Signature-ID").text = "aW5rLjEudXNlcg=="
    results = plain_kms.evaluate(response, "init")
    words = "Signature-ID present although the response is not signed"
    assert_fails(results, "security.ids-absent-when-unprotected", words)
    assert_fails(results, "security.claims-verify", words)
    response = parse_xml(plain_kms.fetch("init"))
    etree.SubElement(response, f"{{{KMS_NS}}}TrK-ID").text = "dHJrLjEudXNlcg=="
    results = plain_kms.evaluate(response, "init")
    words = "TrK-ID present although nothing in the response is encrypted"
    assert_fails(results, "security.ids-absent-when-unprotected", words)


def test_protection_other_than_claimed_fails_expected_protection(plain_kms: Kms) -> None:
    body = plain_kms.fetch("keyprov")
    pics = plain_kms.target.pics
    for claim, words in (
        (replace(pics, signing=True), "not signed although the KMS claims signing"),
        (replace(pics, encryption="message"), "not an xenc:EncryptedData although the KMS"),
        (replace(pics, encryption="keys"), "KmsKeySet[1]/UserDecryptKey is not an EncKeyContent"),
    ):
        results = plain_kms.evaluate(body, "keyprov", pics=claim)
        assert_fails(results, "security.expected-protection", words)


def test_flipped_ciphertext_octet_and_swapped_key_name(message_kms: Kms) -> None:
    root = parse_xml(message_kms.fetch("keyprov"))
    value = first(root, ".//xenc:EncryptedData/xenc:CipherData/xenc:CipherValue")
    octets = bytearray(base64.b64decode(value.text or ""))
    octets[20] ^= 0x80
    value.text = base64.b64encode(bytes(octets)).decode("ascii")
    results = message_kms.evaluate(root, "keyprov")
    assert_fails(results, "security.enc-algorithm", "AES-GCM tag does not verify with the TrK")
    assert_fails(results, "security.sig-verifies", "DigestValue does not match")

    root = parse_xml(message_kms.fetch("keyprov"))
    carol = message_kms.user(CAROL).trk
    assert carol is not None
    first(root, ".//xenc:EncryptedData/ds:KeyInfo/ds:KeyName").text = carol.key_id_b64
    results = message_kms.evaluate(root, "keyprov")
    assert_fails(results, "security.enc-keyinfo", "differs from the TrK-ID element")


def test_broken_encrypted_data_structure(message_kms: Kms) -> None:
    root = parse_xml(message_kms.fetch("init"))
    cipher_data = first(root, ".//xenc:EncryptedData/xenc:CipherData")
    cipher_data.getparent().remove(cipher_data)  # type: ignore[union-attr]
    results = message_kms.evaluate(root, "init")
    assert_fails(results, "security.enc-structure", "no CipherData/CipherValue")

    root = parse_xml(message_kms.fetch("init"))
    message = first(root, "k:KmsResponse/k:KmsMessage")
    etree.SubElement(message, f"{{{KMS_NS}}}KmsInit")
    results = message_kms.evaluate(root, "init")
    assert_fails(results, "security.enc-structure", "holds {urn:3gpp:ns:mcsecKMSInterface:1.0}")


def test_rfc3394_wrap_of_a_257_octet_key_is_refused(keys_kms: Kms) -> None:
    root = parse_xml(keys_kms.fetch("keyprov"))
    method = first(root, ".//k:UserDecryptKey/xenc:EncryptedKey/xenc:EncryptionMethod")
    method.set("Algorithm", xmlenc.KW_AES128)
    results = keys_kms.evaluate(root, "keyprov")
    assert_fails(results, "security.key-wrap", "kw-aes128 (RFC 3394) cannot carry a 257-octet")


def edit_new_key(
    kms: Kms, edit: Callable[[etree._Element, User], None], kind: str = "init"
) -> dict[str, CheckResult]:
    root = parse_xml(kms.fetch(kind))
    edit(root, kms.user())
    return kms.evaluate(root, kind)


def test_new_keys_under_the_wrong_type_or_key_fail(keys_kms: Kms) -> None:
    def wrong_type(root: etree._Element, _: User) -> None:
        first(root, ".//k:KmsInit").set(f"{{{XSI_NS}}}type", "KmsKeyProvTkIkType")

    def rewrapped(key: bytes, kek: bytes) -> Callable[[etree._Element, User], None]:
        def edit(root: etree._Element, user: User) -> None:
            assert user.trk is not None
            holder = first(root, ".//k:NewTransportKey")
            old = first(holder, "xenc:EncryptedKey")
            holder.replace(
                old, xmlenc.build_encrypted_key(kek, key, user.trk.key_id, xmlenc.KW_AES128_PAD)
            )

        return edit

    results = edit_new_key(keys_kms, wrong_type)
    assert_fails(results, "security.new-keys", "expected KmsInitTkIkType")
    trk = keys_kms.user().trk
    assert trk is not None
    results = edit_new_key(keys_kms, rewrapped(bytes(16), bytes(range(16))))
    assert_fails(results, "security.new-keys", "NewTransportKey[1]: does not unwrap with the TrK")
    results = edit_new_key(keys_kms, rewrapped(bytes(24), trk.key.reveal()))
    assert_fails(results, "security.new-keys", "unwraps to 24 octets, expected 16")


def test_hostile_protection_is_recorded_never_raised(message_kms: Kms) -> None:
    edits: list[Callable[[etree._Element], None]] = [
        lambda r: setattr(first(r, ".//ds:SignatureValue"), "text", "!!not base64!!"),
        lambda r: first(r, "ds:Signature").remove(first(r, "ds:Signature/ds:SignedInfo")),
        lambda r: setattr(first(r, "k:KmsResponse/k:TrK-ID"), "text", "***"),
        lambda r: setattr(first(r, "k:KmsResponse/k:Signature-ID"), "text", ""),
        lambda r: setattr(first(r, ".//xenc:CipherValue"), "text", "AAAA"),
        lambda r: setattr(first(r, ".//xenc:EncryptedData/ds:KeyInfo/ds:KeyName"), "text", "%"),
        lambda r: first(r, ".//xenc:EncryptedData").remove(
            first(r, ".//xenc:EncryptedData/xenc:EncryptionMethod")
        ),
        lambda r: first(r, ".//ds:Reference").set("URI", "#nowhere"),
    ]
    body = message_kms.fetch("keyprov")
    for edit in edits:
        root = parse_xml(body)
        edit(root)
        results = message_kms.evaluate(root, "keyprov")
        assert any(r.outcome is Outcome.VIOLATION for r in results.values())
        assert all("\n" not in r.message for r in results.values())


def test_wrong_plaintext_for_the_request_type(message_kms: Kms) -> None:
    results = message_kms.evaluate(message_kms.fetch("init"), "keyprov")
    assert_fails(results, "security.enc-plaintext", "is KmsInit, expected exactly one KmsKeyProv")


def test_offline_check_decrypts_unwraps_and_validates_keys(state: StateDir, tmp_path: Path) -> None:
    with reference_kms(state, KEYS | ROTATING) as kms:
        init, keyprov = tmp_path / "init.xml", tmp_path / "keyprov.xml"
        init.write_bytes(kms.fetch("init"))
        keyprov.write_bytes(kms.fetch("keyprov"))
        result = check_file(keyprov, init_file=init, target_file=kms.target.path)
    outcomes = {r.name: r for r in result.results}
    assert outcomes["security.key-wrap"].outcome is Outcome.OK
    assert outcomes["security.sig-verifies"].outcome is Outcome.OK
    assert outcomes["keyset.eccsi"].outcome is Outcome.OK, outcomes["keyset.eccsi"]
    assert outcomes["keyset.sakke"].outcome is Outcome.OK, outcomes["keyset.sakke"]


def test_user_without_an_ink_is_judged_on_the_trk(state: StateDir) -> None:
    with reference_kms(state, SIGNED_PLAIN, faults=("sig-id-wrong-key",)) as kms:
        # Carol has no InK: the KMS signs with her TrK and names it, so nothing is wrong.
        results = kms.evaluate(kms.fetch("init", CAROL), "init", CAROL)
        bob = kms.evaluate(copy.deepcopy(parse_xml(kms.fetch("init", BOB))), "init", BOB)
    assert results["security.sig-id"].outcome is Outcome.OK
    assert results["security.sig-ink-over-trk"].message == (
        "signed with the TrK (no InK provisioned for this user)"
    )
    assert bob["security.sig-id"].outcome is Outcome.VIOLATION


def test_facts_name_keys_by_id_and_never_hold_a_key(message_kms: Kms) -> None:
    user = message_kms.user()
    raw = parse_response(parse_xml(message_kms.fetch("init")))
    _, facts = unprotect(raw, user, message_kms.profile)
    summary = json.dumps(facts.as_dict())
    assert user.trk is not None and user.ink is not None
    for key in (user.trk.key.reveal(), user.ink.key.reveal()):
        assert key.hex() not in summary.lower()
        assert base64.b64encode(key).decode() not in summary
    assert facts.signature is not None and facts.signature.verified_with() == ["ink"]
    assert facts.encryption is not None and facts.encryption.decrypted
    assert [k.unwrapped_octets for k in facts.wrapped_keys] == [16, 32]
