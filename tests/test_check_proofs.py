"""Every check in conformance/checks/ is proven able to fail (issue 6 item 2).

A check that no fault of the reference KMS reaches (``FAULT_PROOFS`` in check_proofs.py,
verified by test_fault_matrix.py) is proven here by a crafted response: a real answer of
the reference KMS over loopback HTTPS, fetched once per module, with the smallest edit that
breaks that check's rule. Each case runs through the engine (``Runner.run_case``, its sender
handing back the recorded exchanges), so the check sees the ``CheckContext`` a live run
builds; the unedited exchanges must pass the check, so the edit is what makes it fail.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from check_proofs import FAULT_PROOFS
from lxml import etree
from probe_support.kms import serving_kms

from conformance.catalogue.cases import Case, Step
from conformance.checks import REGISTRY
from conformance.core.exchange import Exchange
from conformance.core.xmlsafe import parse_xml
from conformance.model.messages import DS_NS, KMS_NS, XSI_NS
from conformance.profiles import get_profile
from conformance.run.engine import Runner
from conformance.verdicts.outcomes import CheckResult, Outcome
from conformance.xmlsec import xmldsig
from refkms.faults import FAULTS

# The last exchange of a case and the exchanges of its earlier steps -> the crafted one.
Edit = Callable[[Exchange, Sequence[Exchange]], Exchange]
ElementEdit = Callable[[etree._Element], None]

# The reference KMS in the protection modes the proofs need.
MODES: dict[str, dict[str, Any]] = {
    "plain": {"protection": {"encryption": "none", "signing": False}},
    "protected": {"protection": {"encryption": "keys", "signing": True, "rotate_trk": True}},
}
NAMESPACES = {"k": KMS_NS, "ds": DS_NS}
INIT = ({"request": "init"},)
KEYPROV = ({"request": "keyprov"},)
CERTCACHE = ({"request": "certcache"},)
LOOKUP = ({"request": "lookup", "uri": "known"},)
REFUSED = ({"request": "init", "token": "none"},)
SOME_KEY_ID = base64.b64encode(b"ink.1.alice@example.org").decode("ascii")


@dataclass(frozen=True)
class Proof:
    """Steps sent to the reference KMS, the edit of the last answer, and what the failure says."""

    edit: Edit
    words: str
    steps: tuple[Mapping[str, Any], ...] = KEYPROV
    mode: str = "plain"


# -- edits of a recorded exchange ---------------------------------------------------------
# (They come before the tests because PROOFS calls them when the module is imported.)


def in_body(change: ElementEdit) -> Edit:
    return lambda exchange, _: rewritten(exchange, change)


def set_text(path: str, text: str) -> Edit:
    def change(root: etree._Element) -> None:
        find(root, path).text = text

    return in_body(change)


def set_attribute(path: str, name: str, value: str) -> Edit:
    return in_body(lambda root: find(root, path).set(name, value))


def remove(path: str) -> Edit:
    def change(root: etree._Element) -> None:
        element = find(root, path)
        parent = element.getparent()
        assert parent is not None
        parent.remove(element)

    return in_body(change)


def duplicate(path: str) -> Edit:
    def change(root: etree._Element) -> None:
        element = find(root, path)
        element.addnext(copy.deepcopy(element))

    return in_body(change)


def error_msg_first(root: etree._Element) -> None:
    code = find(root, ".//k:KmsError/k:ErrorCode")
    error = code.getparent()
    assert error is not None
    error.append(code)


def user_id_in_hex(root: etree._Element) -> None:
    user_id = find(root, ".//k:KmsKeySet/k:UserID")
    user_id.text = base64.b64decode(user_id.text or "").hex()


def user_id_reversed(root: etree._Element) -> None:
    user_id = find(root, ".//k:KmsKeySet/k:UserID")
    octets = base64.b64decode(user_id.text or "")
    user_id.text = base64.b64encode(octets[::-1]).decode("ascii")


def ssk_of_31_octets(root: etree._Element) -> None:
    ssk = find(root, ".//k:KmsKeySet/k:UserSigningKeySSK")
    ssk.text = (ssk.text or "")[2:]


def rsk_of_256_octets(root: etree._Element) -> None:
    rsk = find(root, ".//k:KmsKeySet/k:UserDecryptKey")
    rsk.text = (rsk.text or "")[:-2]


def signature_id_added(root: etree._Element) -> None:
    etree.SubElement(root, f"{{{KMS_NS}}}Signature-ID").text = SOME_KEY_ID


def user_id_of_the_first_step(exchange: Exchange, earlier: Sequence[Exchange]) -> Exchange:
    path = ".//k:KmsKeySet/k:UserID"
    first = find(parse_xml(earlier[0].body), path).text or ""
    return set_text(path, first)(exchange, earlier)


def signature_stripped(exchange: Exchange, _: Sequence[Exchange]) -> Exchange:
    response = find(parse_xml(exchange.body), "k:KmsResponse")
    return replace(exchange, body=serialized(response))


def without_www_authenticate(exchange: Exchange, _: Sequence[Exchange]) -> Exchange:
    headers = tuple((k, v) for k, v in exchange.headers if k.lower() != "www-authenticate")
    return replace(exchange, headers=headers)


def server_error(exchange: Exchange, _: Sequence[Exchange]) -> Exchange:
    return replace(exchange, status=503, reason="Service Unavailable")


def tls_1_1(exchange: Exchange, _: Sequence[Exchange]) -> Exchange:
    assert exchange.tls is not None
    return replace(exchange, tls=replace(exchange.tls, version="TLSv1.1"))


def answered_like_https(exchange: Exchange, earlier: Sequence[Exchange]) -> Exchange:
    served = earlier[0]
    return replace(
        exchange,
        status=served.status,
        headers=served.headers,
        body=served.body,
        error=None,
        error_kind=None,
    )


# -- the crafted proofs -------------------------------------------------------------------

PROOFS: dict[str, Proof] = {
    "certificate.user-id-format": Proof(
        set_text(".//k:KmsCertificate/k:UserIdFormat", "3"), "UserIdFormat is 3, expected 2", INIT
    ),
    "certificate.version": Proof(
        set_attribute(".//k:KmsCertificate", "Version", "1.0.0"),
        "Version 1.0.0, expected 1.1.0",
        INIT,
    ),
    "certcache.present": Proof(
        remove(".//k:KmsCertCache"), "no KmsCertCache in the response", CERTCACHE
    ),
    "certcache.attributes": Proof(
        set_attribute(".//k:KmsCertCache", "CacheNum", "x"), "CacheNum is not an integer", CERTCACHE
    ),
    "consistency.uid-stable": Proof(
        in_body(user_id_reversed),
        "UserID differs between two calls for sip:alice@example.org",
        ({"request": "keyprov", "label": "first"}, {"request": "keyprov", "label": "second"}),
    ),
    "consistency.uids-differ": Proof(
        user_id_of_the_first_step,
        "the same UserID for sip:alice@example.org",
        (
            {"request": "keyprov", "label": "user1"},
            {"request": "keyprov", "label": "user2", "user": 2},
        ),
    ),
    "envelope.kms-id": Proof(set_text(".//k:KmsId", ""), "KmsId is empty", INIT),
    "envelope.message-choice": Proof(
        duplicate(".//k:KmsInit"), "KmsMessage holds 2 message elements", INIT
    ),
    "error.www-authenticate": Proof(
        without_www_authenticate, "401 without WWW-Authenticate", REFUSED
    ),
    "error.field-order": Proof(
        in_body(error_msg_first), "KmsError children are not ErrorCode then ErrorMsg", REFUSED
    ),
    "error.still-serving": Proof(
        server_error,
        "the KMS answers with a server error",
        ({"request": "keyprov", "label": "malformed", "body": "malformed"}, {"request": "init"}),
    ),
    "keyprov.key-set-present": Proof(remove(".//k:KmsKeySet"), "KmsKeyProv carries no KmsKeySet"),
    "keyset.mandatory-fields": Proof(remove(".//k:KmsKeySet/k:UserID"), "missing UserID"),
    "keyset.versions": Proof(
        set_attribute(".//k:KmsKeySet", "Version", "1.0.0"), "Version 1.0.0, expected 1.1.0"
    ),
    "keyset.user-id-encoding": Proof(
        in_body(user_id_in_hex), "UserID is hex; the profile expects base64"
    ),
    "keyset.ssk-pvt-format": Proof(
        in_body(ssk_of_31_octets), "UserSigningKeySSK is not a scalar in (0, q) of 32 octets (31"
    ),
    "keyset.rsk-format": Proof(
        in_body(rsk_of_256_octets), "UserDecryptKey (256 octets) is not a SAKKE point"
    ),
    "lookup.present": Proof(remove(".//k:KmsLookup"), "no KmsLookup in the response", LOOKUP),
    "lookup.user-uri": Proof(
        set_text(".//k:KmsLookup/k:UserUri", "sip:mallory@example.org"),
        "KmsLookup names another SIP URI",
        LOOKUP,
    ),
    "security.expected-protection": Proof(
        signature_stripped,
        "the response is not signed although the KMS claims signing",
        INIT,
        "protected",
    ),
    "security.sig-digest-c14n": Proof(
        set_attribute(".//ds:DigestMethod", "Algorithm", xmldsig.SHA1),
        f"DigestMethod is {xmldsig.SHA1}, not SHA-256",
        INIT,
        "protected",
    ),
    "security.ids-absent-when-unprotected": Proof(
        in_body(signature_id_added),
        "Signature-ID present although the response is not signed",
        INIT,
    ),
    "security.new-keys": Proof(
        set_attribute(".//k:KmsInit", f"{{{XSI_NS}}}type", "KmsInitType"),
        "KmsInit carries it with xsi:type KmsInitType, expected KmsInitTkIkType",
        # New keys go to a request naming the UE's TrK (refkms.rotation).
        ({"request": "init", "body": "request"},),
        "protected",
    ),
    "transport.tls": Proof(tls_1_1, "the TLS version is too old"),
    "transport.http-refused": Proof(
        answered_like_https,
        "key material served over plain HTTP",
        ({"request": "keyprov", "label": "https"}, {"request": "keyprov", "scheme": "http"}),
    ),
}


# -- tests --------------------------------------------------------------------------------


def test_every_check_is_proven_able_to_fail() -> None:
    unproven = sorted(set(REGISTRY) - set(FAULT_PROOFS) - set(PROOFS))
    assert not unproven, (
        f"nothing makes these {len(unproven)} check(s) fail (give each a fault in "
        f"tests/check_proofs.py or a crafted proof here): {', '.join(unproven)}"
    )
    stale = sorted(set(PROOFS) - set(REGISTRY))
    assert not stale, f"crafted proofs for checks that do not exist: {stale}"


def test_fault_proofs_name_existing_faults_and_checks() -> None:
    faults = {fault.name for fault in FAULTS}
    unknown_faults = {c: f for c, f in FAULT_PROOFS.items() if f not in faults}
    assert not unknown_faults, f"FAULT_PROOFS names faults refkms does not have: {unknown_faults}"
    unknown_checks = sorted(set(FAULT_PROOFS) - set(REGISTRY))
    assert not unknown_checks, f"FAULT_PROOFS names checks that do not exist: {unknown_checks}"


@pytest.mark.parametrize("name", sorted(PROOFS))
def test_crafted_response_makes_the_check_fail(name: str, reference: ReferenceKms) -> None:
    proof = PROOFS[name]
    kms = reference.mode(proof.mode)
    unedited = kms.run(name, proof, edited=False)
    assert unedited.outcome is Outcome.OK, f"{name} on the unedited answer: {unedited.message}"
    failed = kms.run(name, proof, edited=True)
    wanted = REGISTRY[name].severity_on_violation
    assert failed.outcome is wanted, f"{name}: {failed.outcome.value}: {failed.message}"
    assert proof.words in failed.message, f"{name}: {failed.message}"
    assert "\n" not in failed.message


# -- the reference KMS and the engine -----------------------------------------------------


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceKms]:
    with ExitStack() as stack:
        yield ReferenceKms(tmp_path_factory.mktemp("check-proofs"), stack)


class ReferenceKms:
    """The reference KMS in each protection mode, started when a proof first needs it."""

    def __init__(self, directory: Path, stack: ExitStack) -> None:
        self.directory = directory
        self.stack = stack
        self.served: dict[str, RecordedKms] = {}

    def mode(self, name: str) -> RecordedKms:
        if name not in self.served:
            kms = self.stack.enter_context(serving_kms(self.directory / name, MODES[name]))
            runner = Runner(kms.target, get_profile(kms.target.profile.release))
            self.stack.callback(runner.close)
            self.served[name] = RecordedKms(runner)
        return self.served[name]


class RecordedKms:
    """Runs one-check cases through the engine; each step goes over HTTPS once per module."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.recorded: dict[str, Exchange] = {}

    def run(self, name: str, proof: Proof, *, edited: bool) -> CheckResult:
        case = one_check_case(name, proof.steps)
        last = case.steps[-1].label
        sent: list[Exchange] = []

        def send(spec: Mapping[str, Any], label: str) -> Exchange:
            exchange = self.exchange(spec, label)
            if edited and label == last:
                exchange = proof.edit(exchange, sent)
            sent.append(exchange)
            return exchange

        result = self.runner.run_case(case, send)
        found = [c for c in result.checks if c.name == name]
        assert found, f"{name} did not run: {result.verdict.value}: {result.reason}"
        return found[0]

    def exchange(self, spec: Mapping[str, Any], label: str) -> Exchange:
        key = json.dumps([label, spec], sort_keys=True)
        if key not in self.recorded:
            self.recorded[key] = self.runner.probe.send(spec, label)
        return self.recorded[key]


def one_check_case(name: str, specs: Sequence[Mapping[str, Any]]) -> Case:
    """A case of these steps whose last step runs the one check ``name``."""
    check = REGISTRY[name]
    steps = tuple(
        Step(
            label=str(spec.get("label", f"step{number}")),
            request=str(spec["request"]),
            spec=spec,
            expect_status="2xx",
            expect_message=None,
            checks=(name,) if number == len(specs) else (),
        )
        for number, spec in enumerate(specs, start=1)
    )
    return Case(
        id=f"PROOF-{name}",
        title=check.summary,
        area="proof",
        reqs=check.reqs,
        clause=check.clause,
        strength=check.strength.value,
        inferred=check.inferred,
        pics="true",
        needs=(),
        purpose="",
        steps=steps,
        file=Path(__file__),
        line=0,
    )


def find(root: etree._Element, path: str) -> etree._Element:
    found = root.find(path, NAMESPACES)
    assert found is not None, f"{path} not in the reference KMS's answer"
    return found


def rewritten(exchange: Exchange, change: ElementEdit) -> Exchange:
    root = parse_xml(exchange.body)
    change(root)
    return replace(exchange, body=serialized(root))


def serialized(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
