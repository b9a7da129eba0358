"""The fault matrix (issue 6 item 1): false negatives and false positives of the catalogue.

Compliant runs: the reference KMS without faults must pass every applicable case in every
profile and protection mode (encryption none / message / keys, signing on / off, with and
without an InK). Fault runs: with each named fault on (in the protection mode the fault
names, as ``run --embedded-fault`` starts it), every case the fault lists must catch it
by its own rule: a violated (or, where every rule the fault breaks is a should or an
inferred rule, warned) check whose REQ ids meet the fault's REQ ids. A case failing for
another reason does not count. No case may end in ``error``, and any other failing case
must be named in ``COLLATERAL`` with the reason. Each fault's row says which checks caught
it.

Everything goes over real HTTPS on loopback: the reference KMS runs in a thread of the
test process, the harness talks to it through its probe, as a user's run does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from check_proofs import FAULT_PROOFS

from conformance.catalogue.cases import Case, load_catalogue
from conformance.profiles import get_profile
from conformance.run.engine import Runner
from conformance.target.file import Target, load_target
from conformance.verdicts.outcomes import CheckResult, Outcome, Verdict, fold_checks
from conformance.verdicts.results import CaseResult
from refkms.config import config_from_mapping
from refkms.domain import Domain
from refkms.faults import FAULTS, WARNING_ONLY, ActiveFaults, Fault, detection
from refkms.profiles import PROFILES
from refkms.server import running_in_thread
from refkms.state import StateDir
from refkms.target import target_description, write_target

CATALOGUE = load_catalogue()
BY_ID = {case.id: case for case in CATALOGUE}

# Cases that fail under a fault besides the ones it lists, and why that is right: fault ->
# {case id: reason}. Case ids only, no patterns, so that no excuse is wider than what it
# excuses; a named case that no longer fails is an error too (the excuse went stale). A
# failure whose failed check judges one of the fault's own REQ ids needs no entry here.
_UNREADABLE = "the KmsMessage does not decrypt, so the case never sees the message it expects"
_NO_KMS_RESPONSE = (
    "no response is a KmsResponse in the 3GPP namespace: the expected message is missing"
)
_WRONG_MESSAGE = "every request is answered with the wrong message: the expected one is missing"
_NEITHER_KEY = "a signature that verifies with neither key cannot show which key made it"
_UID_OF_USERURI = (
    "keyset.uid computes the UID from the key set's (wrong) UserUri, not the one issued"
)
_UID_OF_KMSURI = "keyset.uid computes the UID from the key set's (wrong) KmsUri, not the one issued"
_TRK_ID_CLAIMED = (
    "a TrK signature names the TrK-ID in Signature-ID: the wrong ID when an InK exists"
)
_NO_KEY_ID = "with no Signature-ID and no TrK-ID there is no key-ID claim left to judge"
_NESTED_PLAINTEXT = "the plaintext is a nested KmsMessage, not the message this case expects"
_PATH_SERVED = "the unknown path meant to draw a 404 + KmsError is served with 200"
_NO_PERIOD = "without UserKeyPeriod the rule 0 <= UserKeyOffset < UserKeyPeriod cannot hold"
_EPOCH_1970 = "periods counted from 1970 put the requested time in another period too"
_ONE_PERIOD = "the next period's request gets the current period: no two periods to compare"
_WRONG_KEY_NAMED = (
    "Signature-ID names the TrK: the signature is checked with a key that did not make it"
)
_SHORT_HMAC = "a 128-bit HMAC verifies under no accepted profile, so no signature check passes"
_NO_401 = "a tokenless request gets 200, so no 401 exists to carry the error code"
_NOT_XSD_INTEGER = "the non-integer ErrorCode also breaks the schema's ErrorType (xsd:integer)"
_STALE_TRK = "after a delivery the KMS encrypts with the TrK the UE no longer holds: unreadable"
_UNHELD_TRK = "a delivering response is encrypted with a TrK the UE does not hold yet: unreadable"
_NEWEST_TRK = (
    "a request naming the provisioned TrK is answered under the newest one, which the UE "
    "does not hold: the answer is unreadable"
)
# Collateral that depends on the day the matrix runs: the case may fail, be inconclusive
# or pass, so it is neither required to fail nor reported as stale.
ON_SOME_DAYS: dict[str, dict[str, str]] = {
    "period-unix-epoch": {
        # 2208988800 s (NTP - Unix) is 7 days past a whole number of 30-day periods: on the
        # days where the KMS's shifted boundary does not fall between now and the next NTP
        # period, both requests land in one KMS period and carry one KeyPeriodNo.
        "KEYPROV-UID-DIFFER-002": "the KMS's periods are shifted from the NTP ones: on some "
        "days now and the next NTP period are one KMS period, with no two periods to compare",
    },
}

COLLATERAL: dict[str, dict[str, str]] = {
    "envelope-wrong-namespace": {
        "ENV-CHOICE-001": _NO_KMS_RESPONSE,
        "ENV-CHOICE-002": _NO_KMS_RESPONSE,
        "ENV-CRU-001": _NO_KMS_RESPONSE,
        "ENV-CRU-002": _NO_KMS_RESPONSE,
        "ENV-CRU-003": _NO_KMS_RESPONSE,
        "ENV-KMSURI-001": _NO_KMS_RESPONSE,
        "ENV-KMSURI-002": _NO_KMS_RESPONSE,
        "ENV-MSGTYPE-001": _NO_KMS_RESPONSE,
        "ENV-MSGTYPE-002": _NO_KMS_RESPONSE,
        "ENV-MSGTYPE-003": _NO_KMS_RESPONSE,
        "ENV-MSGTYPE-004": _NO_KMS_RESPONSE,
        "ENV-ORDER-001": _NO_KMS_RESPONSE,
        "ENV-ORDER-002": _NO_KMS_RESPONSE,
        "ENV-SCHEMA-001": _NO_KMS_RESPONSE,
        "ENV-SCHEMA-002": _NO_KMS_RESPONSE,
        "ENV-SCHEMA-003": _NO_KMS_RESPONSE,
        "ENV-SCHEMA-004": _NO_KMS_RESPONSE,
        "ENV-SCHEMA-005": _NO_KMS_RESPONSE,
        "ENV-TIME-001": _NO_KMS_RESPONSE,
        "ENV-TIME-002": _NO_KMS_RESPONSE,
        "ENV-USERURI-001": _NO_KMS_RESPONSE,
        "ENV-USERURI-002": _NO_KMS_RESPONSE,
        "ENV-USERURI-003": _NO_KMS_RESPONSE,
        "ENV-VERSION-001": _NO_KMS_RESPONSE,
        "ENV-VERSION-002": _NO_KMS_RESPONSE,
    },
    "envelope-wrong-message-type": {
        "ENV-CHOICE-001": _WRONG_MESSAGE,
        "ENV-CHOICE-002": _WRONG_MESSAGE,
        "ENV-CRU-001": _WRONG_MESSAGE,
        "ENV-CRU-002": _WRONG_MESSAGE,
        "ENV-CRU-003": _WRONG_MESSAGE,
        "ENV-KMSURI-001": _WRONG_MESSAGE,
        "ENV-KMSURI-002": _WRONG_MESSAGE,
        "ENV-NS-001": _WRONG_MESSAGE,
        "ENV-NS-002": _WRONG_MESSAGE,
        "ENV-ORDER-001": _WRONG_MESSAGE,
        "ENV-ORDER-002": _WRONG_MESSAGE,
        "ENV-SCHEMA-001": _WRONG_MESSAGE,
        "ENV-SCHEMA-002": _WRONG_MESSAGE,
        "ENV-SCHEMA-003": _WRONG_MESSAGE,
        "ENV-SCHEMA-004": _WRONG_MESSAGE,
        "ENV-SCHEMA-005": _WRONG_MESSAGE,
        "ENV-TIME-001": _WRONG_MESSAGE,
        "ENV-TIME-002": _WRONG_MESSAGE,
        "ENV-USERURI-001": _WRONG_MESSAGE,
        "ENV-USERURI-002": _WRONG_MESSAGE,
        "ENV-USERURI-003": _WRONG_MESSAGE,
        "ENV-VERSION-001": _WRONG_MESSAGE,
        "ENV-VERSION-002": _WRONG_MESSAGE,
    },
    "cert-missing-userkeyperiod": {
        "INIT-CERT-PERIOD-001": _NO_PERIOD,
    },
    "period-unix-epoch": {
        "KEYPROV-TIME-001": _EPOCH_1970,
        "KEYPROV-TIME-002": _EPOCH_1970,
        "KEYPROV-TIME-003": _EPOCH_1970,
    },
    "keyprov-time-ignored": {
        "KEYPROV-UID-DIFFER-002": _ONE_PERIOD,
    },
    "keyset-useruri-other-user": {
        "KEYPROV-TIME-003": _UID_OF_USERURI,
        "KEYPROV-UID-001": _UID_OF_USERURI,
        "KEYPROV-UID-003": _UID_OF_USERURI,
    },
    "keyset-kmsuri-mismatch": {
        "KEYPROV-PCT-001": _UID_OF_KMSURI,
        "KEYPROV-TIME-003": _UID_OF_KMSURI,
        "KEYPROV-UID-001": _UID_OF_KMSURI,
        "KEYPROV-UID-003": _UID_OF_KMSURI,
    },
    "sig-trk-although-ink": {
        "SEC-SIG-ID-001": _TRK_ID_CLAIMED,
        "SEC-SIG-ID-002": _TRK_ID_CLAIMED,
    },
    "sig-id-wrong-key": {
        "SEC-SIG-INK-001": _WRONG_KEY_NAMED,
        "SEC-SIG-VALUE-002": _WRONG_KEY_NAMED,
        "SEC-SIG-VALUE-003": _WRONG_KEY_NAMED,
    },
    "sig-id-missing": {
        "SEC-CLAIMS-001": _NO_KEY_ID,
    },
    "sig-hmac-truncated": {
        "SEC-SIG-INK-001": _SHORT_HMAC,
        "SEC-SIG-TRK-001": _NEITHER_KEY,
        "SEC-SIG-VALUE-001": _SHORT_HMAC,
        "SEC-SIG-VALUE-002": _SHORT_HMAC,
    },
    "sig-value-corrupted": {
        "SEC-SIG-TRK-001": _NEITHER_KEY,
    },
    "enc-wrong-key": {
        "SEC-ENC-KEYINFO-001": _UNREADABLE,
        "SEC-ENC-PLAINTEXT-001": _UNREADABLE,
        "SEC-ENC-PLAINTEXT-002": _UNREADABLE,
        "SEC-ENC-STRUCT-001": _UNREADABLE,
        "SEC-ENC-STRUCT-002": _UNREADABLE,
        "SEC-ENC-TRKID-001": _UNREADABLE,
        "SEC-ENC-TRKID-002": _UNREADABLE,
        "SEC-PROTECTION-001": _UNREADABLE,
        "SEC-PROTECTION-002": _UNREADABLE,
        "SEC-SIG-ALG-001": _UNREADABLE,
        "SEC-SIG-ALG-002": _UNREADABLE,
        "SEC-SIG-ID-002": _UNREADABLE,
        "SEC-SIG-INK-001": _UNREADABLE,
        "SEC-SIG-TRK-001": _UNREADABLE,
        "SEC-SIG-VALUE-002": _UNREADABLE,
        "SEC-SIG-VALUE-003": _UNREADABLE,
    },
    "enc-aes-cbc": {
        "SEC-ENC-KEYINFO-001": _UNREADABLE,
        "SEC-ENC-PLAINTEXT-001": _UNREADABLE,
        "SEC-ENC-PLAINTEXT-002": _UNREADABLE,
        "SEC-ENC-STRUCT-001": _UNREADABLE,
        "SEC-ENC-STRUCT-002": _UNREADABLE,
        "SEC-ENC-TRKID-001": _UNREADABLE,
        "SEC-ENC-TRKID-002": _UNREADABLE,
        "SEC-PROTECTION-001": _UNREADABLE,
        "SEC-PROTECTION-002": _UNREADABLE,
        "SEC-SIG-ALG-001": _UNREADABLE,
        "SEC-SIG-ALG-002": _UNREADABLE,
        "SEC-SIG-ID-001": _UNREADABLE,
        "SEC-SIG-ID-002": _UNREADABLE,
        "SEC-SIG-INK-001": _UNREADABLE,
        "SEC-SIG-TRK-001": _UNREADABLE,
        "SEC-SIG-VALUE-001": _UNREADABLE,
        "SEC-SIG-VALUE-002": _UNREADABLE,
        "SEC-SIG-VALUE-003": _UNREADABLE,
    },
    "enc-gcm-tag-corrupted": {
        "SEC-ENC-KEYINFO-001": _UNREADABLE,
        "SEC-ENC-STRUCT-001": _UNREADABLE,
        "SEC-ENC-STRUCT-002": _UNREADABLE,
        "SEC-ENC-TRKID-001": _UNREADABLE,
        "SEC-ENC-TRKID-002": _UNREADABLE,
        "SEC-PROTECTION-001": _UNREADABLE,
        "SEC-PROTECTION-002": _UNREADABLE,
        "SEC-SIG-ALG-001": _UNREADABLE,
        "SEC-SIG-ALG-002": _UNREADABLE,
        "SEC-SIG-ID-001": _UNREADABLE,
        "SEC-SIG-ID-002": _UNREADABLE,
        "SEC-SIG-INK-001": _UNREADABLE,
        "SEC-SIG-TRK-001": _UNREADABLE,
        "SEC-SIG-VALUE-001": _UNREADABLE,
        "SEC-SIG-VALUE-002": _UNREADABLE,
        "SEC-SIG-VALUE-003": _UNREADABLE,
    },
    "enc-plaintext-invalid": {
        "SEC-ENC-ALG-001": _NESTED_PLAINTEXT,
        "SEC-ENC-KEY-001": _NESTED_PLAINTEXT,
        "SEC-ENC-KEYINFO-001": _NESTED_PLAINTEXT,
        "SEC-ENC-STRUCT-001": _NESTED_PLAINTEXT,
        "SEC-ENC-STRUCT-002": _NESTED_PLAINTEXT,
        "SEC-ENC-TRKID-001": _NESTED_PLAINTEXT,
        "SEC-ENC-TRKID-002": _NESTED_PLAINTEXT,
        "SEC-PROTECTION-001": _NESTED_PLAINTEXT,
        "SEC-PROTECTION-002": _NESTED_PLAINTEXT,
        "SEC-SIG-ALG-001": _NESTED_PLAINTEXT,
        "SEC-SIG-ALG-002": _NESTED_PLAINTEXT,
        "SEC-SIG-ID-001": _NESTED_PLAINTEXT,
        "SEC-SIG-ID-002": _NESTED_PLAINTEXT,
        "SEC-SIG-INK-001": _NESTED_PLAINTEXT,
        "SEC-SIG-TRK-001": _NESTED_PLAINTEXT,
        "SEC-SIG-VALUE-001": _NESTED_PLAINTEXT,
        "SEC-SIG-VALUE-002": _NESTED_PLAINTEXT,
        "SEC-SIG-VALUE-003": _NESTED_PLAINTEXT,
    },
    "auth-no-token-accepted": {
        "ERR-CODE-003": _NO_401,
    },
    "unknown-path-served": {
        "ERR-CODE-001": _PATH_SERVED,
    },
    # Rotation (issue 12): the period cases name the UE's keys in every request, so a
    # rotating KMS delivers keys in them too and the fault reaches their later steps.
    "rotation-old-trk-used": {
        "ROT-PERIOD-001": _STALE_TRK,
        "ROT-PERIOD-002": _STALE_TRK,
    },
    "rotation-new-trk-protects-delivery": {
        "ROT-PERIOD-001": _UNHELD_TRK,
        "ROT-PERIOD-002": _UNHELD_TRK,
    },
    "rotation-old-trk-id-answered-with-new": {
        "ROT-PERIOD-001": _NEWEST_TRK,
        "ROT-PERIOD-002": _NEWEST_TRK,
        "ROT-TRK-001": _NEWEST_TRK,
    },
    "period-other-numbered-current": {
        "ROT-PERIOD-002": "next-period key sets claim the current period, so two RSKs share "
        "one period number and the within-period stability rule sees them differ",
    },
    "error-code-not-integer": {
        "ERR-SHAPE-002": _NOT_XSD_INTEGER,
    },
}

MODES: dict[str, tuple[str, dict[str, Any]]] = {
    "r17-sign": ("ts33180-r17", {}),
    "r17-plain": ("ts33180-r17", {"protection": {"signing": False}}),
    "r17-message": ("ts33180-r17", {"protection": {"encryption": "message"}}),
    "r17-keys": ("ts33180-r17", {"protection": {"encryption": "keys"}}),
    "r17-message-unsigned": (
        "ts33180-r17",
        {"protection": {"encryption": "message", "signing": False}},
    ),
    "r17-no-ink": (
        "ts33180-r17",
        {
            "protection": {"encryption": "message"},
            "users": [
                {"uri": "sip:alice@example.org", "trk_id": "dHJrLjEuYWxpY2U="},
                {"uri": "sip:bob@example.org", "trk_id": "dHJrLjEuYm9i"},
            ],
        },
    ),
    "r16-sign": ("ts33180-r16", {}),
    # Rotation on (issue 12): the UE model follows every delivered TrK/InK.
    "r17-message-rotating": (
        "ts33180-r17",
        {"protection": {"encryption": "message", "rotate_trk": True, "rotate_ink": True}},
    ),
    "r17-keys-rotating": (
        "ts33180-r17",
        {"protection": {"encryption": "keys", "rotate_trk": True, "rotate_ink": True}},
    ),
    # The KMS's own certificate replaced and restored by ROT-CERT-* (conformance/run/control.py):
    # every case after them still passes against the run-wide certificate.
    "r17-cert-rotation": ("ts33180-r17", {"kms_cert_rotation": True}),
}


@contextmanager
def served(
    tmp: Path, profile: str, config: dict[str, Any], faults: tuple[str, ...] = ()
) -> Iterator[Target]:
    state = StateDir(tmp)
    domain = Domain(config_from_mapping(config), PROFILES[profile], ActiveFaults(faults), state)
    tls = state.tls()
    with running_in_thread(domain, tls) as listening:
        write_target(state.target_file, target_description(domain, listening.base_url, tls.ca_file))
        yield load_target(state.target_file)


def run_cases(target: Target, cases: list[Case]) -> dict[str, CaseResult]:
    runner = Runner(target, get_profile(target.profile.release))
    try:
        return {case.id: runner.run_case(case) for case in cases}
    finally:
        runner.close()


def _describe(result: CaseResult) -> str:
    return f"{result.id} {result.verdict.value}: {result.reason}"


@pytest.mark.parametrize("mode", list(MODES))
def test_the_compliant_reference_kms_passes_every_applicable_case(
    mode: str, tmp_path: Path
) -> None:
    profile, config = MODES[mode]
    with served(tmp_path, profile, config) as target:
        results = run_cases(target, CATALOGUE)
    bad = [r for r in results.values() if r.verdict not in (Verdict.PASS, Verdict.NA)]
    ran = [r for r in results.values() if r.verdict is not Verdict.NA]
    print(f"\n{mode}: {len(ran)} applicable cases, {len(results) - len(ran)} n/a")
    assert len(ran) >= 100, f"only {len(ran)} cases applied in mode {mode}"
    assert not bad, "false failures on the compliant KMS:\n" + "\n".join(map(_describe, bad))


def _fault_cases(fault: Fault) -> list[Case]:
    """The fault's own cases plus every case of the same areas (to see collateral)."""
    listed = [BY_ID[c] for c in fault.cases if c in BY_ID]
    areas = {case.area for case in listed}
    extra = [c for c in CATALOGUE if c.area in areas and c.id not in fault.cases]
    return listed + extra


def test_warning_only_names_real_faults() -> None:
    assert {f.name for f in FAULTS} >= WARNING_ONLY


def catching_checks(result: CaseResult, fault: Fault) -> list[CheckResult]:
    """The checks of ``result`` that caught ``fault`` by its own rule: violated or warned,
    with REQ ids meeting the fault's (an expectation carries its case's REQ ids)."""
    rules = set(fault.reqs)
    return [
        c
        for c in result.checks
        if c.outcome in (Outcome.VIOLATION, Outcome.WARNING) and rules & set(c.reqs)
    ]


def _detected(result: CaseResult, fault: Fault) -> str | None:
    """ "fail" (a violated check of the fault's rule), "warning" (only warned), or None."""
    caught = catching_checks(result, fault)
    if any(c.outcome is Outcome.VIOLATION for c in caught):
        return "fail"
    return "warning" if caught else None


def _same_rule(result: CaseResult, fault: Fault) -> bool:
    """A failure elsewhere is explained when a check that failed there judges a rule the
    fault breaks (the same deviation seen by another case)."""
    failed = [c for c in result.checks if c.outcome in (Outcome.VIOLATION, Outcome.WARNING)]
    return any(set(c.reqs) & set(fault.reqs) for c in failed if not c.name.startswith("expect."))


def _caught_text(results: list[CaseResult], fault: Fault) -> str:
    """ "CASE: check[REQ, ...] ..." for each listed case: which checks caught the fault."""
    parts = []
    for result in results:
        checks = catching_checks(result, fault)
        named = ", ".join(f"{c.name}[{','.join(c.reqs)}]" for c in checks) or "nothing"
        parts.append(f"{result.id}: {named}")
    return "; ".join(parts)


def _table_row(
    fault: Fault,
    detecting: list[CaseResult],
    undetected: list[CaseResult],
    how: dict[str, str | None],
    collateral: list[CaseResult],
) -> str:
    """One row of the detection table tests/conftest.py prints at the end of the run."""
    state = "NO" if undetected else "yes"
    kinds = ",".join(sorted({h for h in how.values() if h})) or "-"
    lines = [f"{fault.name:40} {state:9} {kinds:13} {', '.join(fault.cases)}"]
    lines.append(f"    caught by {_caught_text(detecting, fault)}")
    lines += [f"    unexplained {_describe(r)}" for r in collateral]
    text = "\n".join(lines) + "\n"
    folder = os.environ.get("KMS_FAULT_TABLE_DIR")
    if folder:
        Path(folder, f"{fault.name}.txt").write_text(text, encoding="utf-8")
    return text


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_each_fault_is_detected_by_its_cases(fault: Fault, tmp_path: Path) -> None:
    missing = [c for c in fault.cases if c not in BY_ID]
    assert not missing, f"{fault.name} lists cases that do not exist: {missing}"
    cases = _fault_cases(fault)
    with served(tmp_path, "ts33180-r17", fault.embedded_config(), (fault.name,)) as target:
        results = run_cases(target, cases)
    detecting = [results[c] for c in fault.cases]
    how = {r.id: _detected(r, fault) for r in detecting}
    undetected = [r for r in detecting if how[r.id] is None]
    errors = [r for r in results.values() if r.verdict is Verdict.ERROR]
    explained = {**COLLATERAL.get(fault.name, {}), **ON_SOME_DAYS.get(fault.name, {})}
    failing = {
        r.id
        for r in results.values()
        if r.id not in fault.cases and r.verdict in (Verdict.FAIL, Verdict.INCONC)
    }
    collateral = [
        results[c]
        for c in sorted(failing)
        if not _same_rule(results[c], fault) and c not in explained
    ]
    stale = sorted(c for c in COLLATERAL.get(fault.name, {}) if c not in failing)
    fired = {
        c.name
        for r in results.values()
        for c in r.checks
        if c.outcome in (Outcome.VIOLATION, Outcome.WARNING)
    }
    claimed = {check for check, name in FAULT_PROOFS.items() if name == fault.name}
    print("\n" + _table_row(fault, detecting, undetected, how, collateral))
    assert claimed <= fired, f"{fault.name} was to prove {sorted(claimed - fired)} can fail"
    kinds = {how[r.id] for r in detecting}
    if detection(fault) == "fail":
        assert "fail" in kinds, f"{fault.name} should make a case fail, got only {kinds}"
    else:
        assert "fail" not in kinds, f"{fault.name} fails a case: take it out of WARNING_ONLY"
    # `run --embedded-fault` folds strictly (a self-test: a warning is a catch), so every
    # listed case fails there and the run exits 1.
    strict = {r.id: fold_checks(r.checks, strict=True) for r in detecting}
    assert all(v is Verdict.FAIL for v in strict.values()), f"{fault.name}: {strict}"
    assert not undetected, f"{fault.name} not detected:\n" + "\n".join(map(_describe, undetected))
    assert not errors, f"{fault.name}: cases ended in error:\n" + "\n".join(map(_describe, errors))
    assert not stale, f"{fault.name}: COLLATERAL names cases that do not fail: {stale}"
    assert not collateral, (
        f"{fault.name}: unexplained failures (add to COLLATERAL with the reason, or fix):\n"
        + "\n".join(map(_describe, collateral))
    )
