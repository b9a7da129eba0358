"""The fault matrix (issue 6 item 1): false negatives and false positives of the catalogue.

Compliant runs: the reference KMS without faults must pass every applicable case in every
profile and protection mode (encryption none / message / keys, signing on / off, with and
without an InK). Fault runs: with each named fault on, every case the fault lists must
fail (or warn, when every rule the fault breaks is a should or an inferred rule), no case
may end in ``error``, and any other failing case must be explained in ``COLLATERAL``.

Everything goes over real HTTPS on loopback: the reference KMS runs in a thread of the
test process, the harness talks to it through its probe, as a user's run does.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from check_proofs import FAULT_PROOFS

from conformance.cases import Case, load_catalogue
from conformance.engine import Runner
from conformance.profiles import get_profile
from conformance.results import CaseResult
from conformance.target import Target, load_target
from conformance.verdicts import Outcome, Verdict, fold_checks
from refkms.config import config_from_mapping
from refkms.domain import Domain
from refkms.faults import FAULTS, WARNING_ONLY, ActiveFaults, Fault, detection, embedded_config
from refkms.profiles import PROFILES
from refkms.server import running_in_thread
from refkms.state import StateDir
from refkms.target import target_description, write_target

CATALOGUE = load_catalogue()
BY_ID = {case.id: case for case in CATALOGUE}

# The protection a fault needs to be observable at all (its hook acts on that protection).
FAULT_CONFIG: dict[str, dict[str, Any]] = {
    "enc-": {"protection": {"encryption": "message"}},
    "keys-": {"protection": {"encryption": "keys"}},
}

# Cases that fail under a fault besides the ones it lists, and why that is right.
# (A failure whose failed check judges one of the fault's own REQ ids needs no entry here.)
_UNREADABLE = "the KmsMessage cannot be decrypted or parsed, so no case sees its content"
COLLATERAL: dict[str, tuple[tuple[str, ...], str]] = {
    "envelope-wrong-message-type": (
        ("ENV-*",),
        "every response carries the wrong message, so every case expecting one sees it",
    ),
    "envelope-wrong-namespace": (
        ("ENV-*",),
        "no response is a KmsResponse in the 3GPP namespace, so no case finds its message",
    ),
    "cert-missing-userkeyperiod": (
        ("INIT-CERT-PERIOD-001",),
        "without UserKeyPeriod the rule 0 <= UserKeyOffset < UserKeyPeriod cannot hold",
    ),
    "keyprov-time-ignored": (
        ("KEYPROV-UID-DIFFER-*",),
        "the next period's request gets the current period, so no two periods exist to compare",
    ),
    "period-unix-epoch": (
        ("KEYPROV-TIME-*",),
        "periods counted from 1970 put every requested time in the wrong period",
    ),
    "keyset-useruri-other-user": (
        ("KEYPROV-UID-*", "KEYPROV-TIME-*"),
        "the UID computed from the key set's (wrong) UserUri is not the one issued",
    ),
    "keyset-kmsuri-mismatch": (
        ("KEYPROV-UID-*", "KEYPROV-TIME-*", "KEYPROV-PCT-*"),
        "the UID computed from the key set's (wrong) KmsUri is not the one issued",
    ),
    "sig-id-wrong-key": (
        ("SEC-SIG-*",),
        "Signature-ID names the TrK, so the signature is checked with a key that did not make it",
    ),
    "sig-id-missing": (
        ("SEC-CLAIMS-*",),
        "with no Signature-ID and no TrK-ID there is no key-ID claim left to judge",
    ),
    "sig-hmac-truncated": (
        ("SEC-SIG-*",),
        "a 128-bit HMAC verifies under no accepted profile, so no signature case passes",
    ),
    "sig-value-corrupted": (
        ("SEC-SIG-TRK-*",),
        "a signature that verifies with neither key cannot show which key made it",
    ),
    "sig-trk-although-ink": (
        ("SEC-SIG-ID-*",),
        "a TrK signature names the TrK-ID, which is the wrong ID when an InK exists",
    ),
    "enc-wrong-key": (("SEC-*",), _UNREADABLE),
    "enc-aes-cbc": (("SEC-*",), _UNREADABLE),
    "enc-gcm-tag-corrupted": (("SEC-*",), _UNREADABLE),
    "enc-plaintext-invalid": (("SEC-*",), _UNREADABLE),
    "auth-no-token-accepted": (
        ("ERR-AUTH-NOTOKEN-*", "ERR-CODE-*"),
        "a tokenless request gets 200, so no 401 exists to carry the challenge or error code",
    ),
    "authz-other-users-keys-served": (
        ("ERR-SHAPE-*",),
        "the request meant to draw a KmsError is served, so no KmsError exists to judge",
    ),
    "request-stale-time-accepted": (
        ("REQUEST-TIME-*",),
        "a stale Time is accepted whatever else the request says",
    ),
    "request-bad-signature-accepted": (
        ("REQUEST-SIG-*",),
        "signatures are not checked at all, so every wrongly signed request is served",
    ),
    "unknown-path-served": (
        ("ERR-CODE-*",),
        "the unknown path meant to draw a 404 + KmsError is served with 200",
    ),
    "rotation-old-trk-used": (
        ("ROT-*",),
        "after the first delivery no later response opens with the TrK the UE holds",
    ),
    "rotation-new-trk-protects-delivery": (
        ("ROT-*",),
        "every init (the KMS certificate included) is encrypted with a TrK the UE does not hold",
    ),
    "rotation-old-trk-id-answered-with-new": (
        ("ROT-*",),
        "once it delivered a TrK, requests naming the provisioned one get the newest, so the "
        "first step of every later case (and its KMS certificate) is unreadable",
    ),
    "period-other-numbered-current": (
        ("ROT-PERIOD-002",),
        "next-period key sets claim the current period, so two RSKs share one period number",
    ),
    "error-code-not-integer": (
        ("ERR-SHAPE-*",),
        "the non-integer ErrorCode also breaks the schema's ErrorType",
    ),
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


def _detected(result: CaseResult, fault: Fault) -> str | None:
    """ "fail", "warning" (a should/inferred rule of the fault or case warned), or None."""
    if result.verdict is Verdict.FAIL:
        return "fail"
    if result.verdict is not Verdict.PASS:
        return None
    rules = set(fault.reqs) | set(result.reqs)
    warned = [c for c in result.checks if c.outcome is Outcome.WARNING and rules & set(c.reqs)]
    return "warning" if warned else None


def _same_rule(result: CaseResult, fault: Fault) -> bool:
    """A failure elsewhere is explained when a check that failed there judges a rule the
    fault breaks (the same deviation seen by another case)."""
    failed = [c for c in result.checks if c.outcome in (Outcome.VIOLATION, Outcome.WARNING)]
    return any(set(c.reqs) & set(fault.reqs) for c in failed if not c.name.startswith("expect."))


def _table_row(
    fault: Fault,
    undetected: list[CaseResult],
    how: dict[str, str | None],
    collateral: list[CaseResult],
) -> None:
    """One row of the detection table tests/conftest.py prints at the end of the run."""
    folder = os.environ.get("KMS_FAULT_TABLE_DIR")
    if not folder:
        return
    state = "NO" if undetected else "yes"
    kinds = ",".join(sorted({h for h in how.values() if h})) or "-"
    lines = [f"{fault.name:40} {state:9} {kinds:13} {', '.join(fault.cases)}"]
    lines += [f"    unexplained {_describe(r)}" for r in collateral]
    Path(folder, f"{fault.name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _config_for(fault: Fault) -> dict[str, Any]:
    if embedded_config(fault.name):
        return embedded_config(fault.name)
    for prefix, config in FAULT_CONFIG.items():
        if fault.name.startswith(prefix):
            return config
    return {}


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_each_fault_is_detected_by_its_cases(fault: Fault, tmp_path: Path) -> None:
    missing = [c for c in fault.cases if c not in BY_ID]
    assert not missing, f"{fault.name} lists cases that do not exist: {missing}"
    cases = _fault_cases(fault)
    with served(tmp_path, "ts33180-r17", _config_for(fault), (fault.name,)) as target:
        results = run_cases(target, cases)
    detecting = [results[c] for c in fault.cases]
    how = {r.id: _detected(r, fault) for r in detecting}
    undetected = [r for r in detecting if how[r.id] is None]
    errors = [r for r in results.values() if r.verdict is Verdict.ERROR]
    explained_globs, _why = COLLATERAL.get(fault.name, ((), ""))
    collateral = [
        r
        for r in results.values()
        if r.id not in fault.cases
        and r.verdict in (Verdict.FAIL, Verdict.INCONC)
        and not _same_rule(r, fault)
        and not any(fnmatch.fnmatchcase(r.id, g) for g in explained_globs)
    ]
    fired = {
        c.name
        for r in results.values()
        for c in r.checks
        if c.outcome in (Outcome.VIOLATION, Outcome.WARNING)
    }
    claimed = {check for check, name in FAULT_PROOFS.items() if name == fault.name}
    _table_row(fault, undetected, how, collateral)
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
    assert not collateral, (
        f"{fault.name}: unexplained failures (add to COLLATERAL with the reason, or fix):\n"
        + "\n".join(map(_describe, collateral))
    )
