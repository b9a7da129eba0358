"""The fault catalogue: listed with REQ ids, and each fault visibly changes what the KMS says.

The smoke test replays one transcript of requests (every request type and error path)
against the compliant KMS and against the KMS with one fault, and requires a difference.
Random parts of a response (IVs, hence ciphertexts and signature values) are replaced by
what they mean: the decrypted plaintext, and whether the signature verifies.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree
from refkms_testkit import DS, NS, REPO, UE, XENC, RunningKms, make_domain, request_body, serving
from test_errors import signed_request

from conformance.crypto.errors import CryptoError
from conformance.xmlsec import xmldsig, xmlenc
from refkms import certchange
from refkms.faults import EMBEDDED_CONFIG, FAULTS, fault_names
from refkms.profiles import TOKEN_SCOPE
from refkms.rotation import KeyChain
from refkms.state import StateDir

REQ_ID = re.compile(r"REQ-\d{3}")
CASE_ID = re.compile(r"[A-Z]+(-[A-Z0-9]+)*-\d{3}")
MESSAGE_PROTECTION = {"encryption": "message", "signing": True}
# Faults that only show under another protection policy than the smoke default.
PROTECTION_FOR = {
    "keys-wrapped-wrong-key": {"encryption": "keys", "signing": True},
    # The rotation faults act in the mode they need (refkms/faults.py EMBEDDED_CONFIG).
    **{
        name: {"signing": True, **config.get("protection", {})}
        for name, config in EMBEDDED_CONFIG.items()
    },
}
# Faults that act once the KMS's own certificate was replaced (refkms/certchange.py): their
# transcripts (and baselines) are taken with the replacement in force.
REPLACED = {name for name, config in EMBEDDED_CONFIG.items() if config.get("kms_cert_rotation")}
Exchange = Callable[[RunningKms], httpx.Response]


def test_catalogue_lists_at_least_40_faults_with_req_ids_and_cases() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "refkms", "faults", "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    faults = json.loads(listed.stdout)
    assert len(faults) >= 40
    assert len({fault["name"] for fault in faults}) == len(faults)
    for fault in faults:
        assert fault["description"] and fault["hook"]
        assert fault["reqs"] and all(REQ_ID.fullmatch(req) for req in fault["reqs"])
        assert fault["cases"] and all(CASE_ID.fullmatch(case) for case in fault["cases"])


def test_catalogue_reqs_exist_in_the_requirements() -> None:
    requirements = (Path(os.environ["KMS_CONFORMANCE_SHARED"]) / "spec/requirements.md").read_text()
    known = set(re.findall(r"\| (REQ-\d{3}) \|", requirements))
    cited = {req for fault in FAULTS for req in fault.reqs}
    assert cited <= known, sorted(cited - known)


def test_the_compliant_transcript_is_reproducible(state: StateDir) -> None:
    assert transcript(state, ()) == transcript(state, ())


@pytest.mark.parametrize("fault", fault_names())
def test_fault_changes_the_transcript(
    state: StateDir, fault: str, baselines: dict[str, Any]
) -> None:
    protection = PROTECTION_FOR.get(fault, MESSAGE_PROTECTION)
    replaced = fault in REPLACED
    key = json.dumps([protection, replaced], sort_keys=True)
    if key not in baselines:
        baselines[key] = transcript(state, (), protection, replaced=replaced)
    faulted = transcript(state, (fault,), protection, replaced=replaced)
    assert faulted != baselines[key]


@pytest.fixture(scope="module")
def baselines() -> dict[str, Any]:
    return {}


def transcript(
    state: StateDir,
    faults: tuple[str, ...],
    protection: dict[str, Any] | None = None,
    *,
    replaced: bool = False,
) -> list[tuple[Any, ...]]:
    settings = {"kms_cert_rotation": True} if replaced else None
    protection = protection or MESSAGE_PROTECTION
    domain = make_domain(state, faults=faults, protection=protection, settings=settings)
    switch = state.path / certchange.GENERATION_FILE
    try:
        if replaced:  # as `python -m refkms kms-cert --state DIR replace` leaves it
            switch.write_text("1\n")
        with serving(domain, state) as kms:
            return [_normalized(kms, exchange(kms)) for exchange in EXCHANGES]
    finally:
        switch.unlink(missing_ok=True)


def _negative(name: str) -> Exchange:
    return lambda kms: kms.post(
        "init", token=kms.domain.tokens.mint_negative_cases(UE, TOKEN_SCOPE)[name]
    )


def _after_rotation(kms: RunningKms) -> httpx.Response:
    """keyprov from a UE that adopted the first delivered TrK and InK and says so."""
    user = kms.user()
    chain = KeyChain(user, kms.domain.rotation_seeds[user.uri])
    trk_id, _ = chain.trk(1)
    ink = chain.ink(1 if kms.domain.config.protection.rotate_ink else 0)
    assert ink is not None
    request = etree.fromstring(request_body(kms, "keyprov"))
    etree.SubElement(request, f"{{{NS}}}TrK-ID").text = base64.b64encode(trk_id).decode()
    etree.SubElement(request, f"{{{NS}}}Signature-ID").text = base64.b64encode(ink[0]).decode()
    signed = etree.Element(f"{{{NS}}}SignedKmsRequest", nsmap={None: NS})  # type: ignore[dict-item]
    signed.append(request)
    xmldsig.sign(request, ink[1], ink[0], parent=signed, id_value="request")
    return kms.post("keyprov", etree.tostring(signed))


def _naming_trk(kms: RunningKms) -> httpx.Response:
    """init from a UE that names its provisioned TrK (a rotating KMS delivers to it)."""
    request = etree.fromstring(request_body(kms, "init"))
    trk_id = base64.b64encode(kms.user().trk_id).decode()
    etree.SubElement(request, f"{{{NS}}}TrK-ID").text = trk_id
    return kms.post("init", etree.tostring(request))


def _wrong_hmac(kms: RunningKms) -> httpx.Response:
    return kms.post("init", signed_request(kms, bytes(32), kms.user().ink_id))


EXCHANGES: list[Exchange] = [
    lambda kms: kms.post("init"),
    lambda kms: kms.post("keyprov"),
    lambda kms: kms.post("keyprov"),
    lambda kms: kms.post("keyprov/sip%3Auser%40example.org/D6B4323200000000"),
    lambda kms: kms.post("certcache"),
    lambda kms: kms.post("certcache/3"),
    lambda kms: kms.post("cert/kms.partner1.example.net"),
    lambda kms: kms.post("cert/" + kms.domain.config.kms_uri),
    lambda kms: kms.post("cert/kms.unknown.example"),
    lambda kms: kms.post("lookup/sip%3Auser1%40partner1.example.net"),
    lambda kms: kms.post("redirect", request_body(kms, "redirect", krr=True)),
    lambda kms: kms.post("init", method="GET"),
    lambda kms: kms.post("bogus"),
    lambda kms: kms.post("init", authorize=False),
    _negative("expired"),
    _negative("wrong_scope"),
    _negative("bad_signature"),
    lambda kms: kms.post("keyprov/sip%3Abob%40example.org"),
    lambda kms: kms.post("init", request_body(kms, "init", time="2014-01-26T09:00:00Z")),
    lambda kms: kms.post("init", request_body(kms, "init", user_uri="sip:bob@example.org")),
    _wrong_hmac,
    _naming_trk,
    _after_rotation,
    _naming_trk,
]


def _normalized(kms: RunningKms, response: httpx.Response) -> tuple[Any, ...]:
    headers = tuple(
        response.headers.get(name)
        for name in ("content-type", "cache-control", "www-authenticate", "allow")
    )
    if not response.content:
        return response.status_code, headers, b""
    root = etree.fromstring(response.content)
    user = kms.user()
    # Signatures first: decrypting in place changes what they cover.
    for signature in root.iter(f"{{{DS}}}Signature"):
        verdict = xmldsig.verify(signature, user.ink).reason
        for value in signature.iter(f"{{{DS}}}DigestValue", f"{{{DS}}}SignatureValue"):
            value.text = f"verify: {verdict}"
    for encrypted in root.iter(f"{{{XENC}}}EncryptedData"):
        try:
            meaning = xmlenc.decrypt_content(encrypted, user.trk).decode()
        except CryptoError as exc:
            meaning = f"undecryptable: {type(exc).__name__}"
        cipher_value = encrypted.find(f"{{{XENC}}}CipherData/{{{XENC}}}CipherValue")
        assert cipher_value is not None
        cipher_value.text = meaning
    # The port differs between servers; the signature verdict above already judged it.
    body = etree.tostring(root).replace(kms.base_url.encode(), b"BASE")
    return response.status_code, headers, body
