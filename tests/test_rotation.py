"""Stateful UE scenarios (issue 12): TrK/InK rotation and key periods, end to end.

The reference KMS runs over real HTTPS on loopback in each protection mode that claims
rotation; the rotation cases must pass there, be n/a with the reason where rotation is
not claimed, and each rotation fault must make its cases fail through a check of a rule
the fault breaks, from the command line too. The run's reports must show the UE key state
(IDs and fingerprints) and hold no delivered key value in any form.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_fault_matrix import run_cases, served

from conformance.catalogue.cases import CaseFileError, _schema, load_catalogue, load_file
from conformance.profiles import get_profile
from conformance.run.engine import Runner
from conformance.run.runcmd import embedded_kms
from conformance.verdicts.outcomes import Outcome, Verdict
from refkms.faults import EMBEDDED_CONFIG, WARNING_ONLY, get_fault
from refkms.rotation import generation_key

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "conformance.run.cli"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
ROTATION = [c for c in load_catalogue() if c.area == "rotation"]
# Each also lets the harness replace the KMS's certificate (ROT-CERT-*, refkms/certchange.py).
ROTATING_MODES: dict[str, dict[str, Any]] = {
    "message": {
        "kms_cert_rotation": True,
        "protection": {"encryption": "message", "rotate_trk": True, "rotate_ink": True},
    },
    "keys": {
        "kms_cert_rotation": True,
        "protection": {"encryption": "keys", "rotate_trk": True, "rotate_ink": True},
    },
    "message-unsigned-trk-only": {
        "kms_cert_rotation": True,
        "protection": {"encryption": "message", "signing": False, "rotate_trk": True},
    },
}
ROTATION_FAULTS = [
    "rotation-old-trk-used",
    "rotation-new-trk-protects-delivery",
    "rotation-trk-id-names-old",
    "rotation-trk-signature-after-ink",
    "rotation-delivered-key-wrong-kek",
    "rsk-same-across-periods",
    "period-other-numbered-current",
    "rotation-old-trk-id-answered-with-new",
]


@pytest.mark.parametrize("mode", list(ROTATING_MODES))
def test_rotation_cases_pass_where_rotation_is_claimed(mode: str, tmp_path: Path) -> None:
    config = ROTATING_MODES[mode]
    with served(tmp_path, "ts33180-r17", config) as target:
        results = run_cases(target, ROTATION)
    policy = config["protection"]
    signing = policy.get("signing", True)
    for result in results.values():
        needs_ink = "INK" in result.id or "BOTH" in result.id
        if needs_ink and not (policy.get("rotate_ink") and signing):
            assert result.verdict is Verdict.NA, (result.id, result.reason)
            assert "ink_rotation" in result.reason
        else:
            assert result.verdict is Verdict.PASS, (result.id, result.reason)
    # The state really changed: a later step was judged with a delivered TrK.
    steps = results["ROT-TRK-001"].steps
    assert steps[0].ue_keys is not None and steps[0].ue_keys["delivered"][0]["adopted"]
    assert steps[1].ue_keys is not None
    assert steps[1].ue_keys["before"]["trk"]["id"] == steps[0].ue_keys["delivered"][0]["id"]


def test_rotation_cases_are_na_with_the_reason_where_not_claimed(tmp_path: Path) -> None:
    with served(tmp_path, "ts33180-r17", {"protection": {"encryption": "message"}}) as target:
        results = run_cases(target, ROTATION)
    for case_id in ("ROT-TRK-001", "ROT-TRK-002", "ROT-INK-001", "ROT-INK-002", "ROT-BOTH-001"):
        assert results[case_id].verdict is Verdict.NA
        assert results[case_id].reason.startswith("PICS: the target does not claim")
        assert "rotation" in results[case_id].reason
    # Key periods need no claim: they hold for every KMS.
    assert results["ROT-PERIOD-001"].verdict is Verdict.PASS
    assert results["ROT-PERIOD-002"].verdict is Verdict.PASS


@pytest.mark.parametrize("name", ROTATION_FAULTS)
def test_each_rotation_fault_is_caught_by_the_rule_it_breaks(name: str, tmp_path: Path) -> None:
    fault = get_fault(name)
    cases = [c for c in ROTATION if c.id in fault.cases]
    with served(tmp_path, "ts33180-r17", EMBEDDED_CONFIG.get(name, {}), (name,)) as target:
        results = run_cases(target, cases)
    # A fault breaking only an inferred rule warns (DESIGN.md 3); --strict fails it.
    warns = name in WARNING_ONLY
    for case_id in fault.cases:
        result = results[case_id]
        wanted = Verdict.PASS if warns else Verdict.FAIL
        assert result.verdict is wanted, (case_id, result.reason)
        rule = [
            c
            for c in result.checks
            if c.outcome is (Outcome.WARNING if warns else Outcome.VIOLATION)
            and not c.name.startswith("expect.")
            and set(c.reqs) & set(fault.reqs)
        ]
        assert rule, f"{name}: {case_id} failed, but by no check of {fault.reqs}"


@pytest.mark.slow
@pytest.mark.parametrize("name", ROTATION_FAULTS)
def test_each_rotation_fault_fails_the_cli_run(name: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [*CLI, "run", "--embedded-fault", name, "--cases", "ROT-*", "--output", str(out)],
        capture_output=True,
        timeout=300,
        env=ENV,
        text=True,
    )
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    document = json.loads((out / "results.json").read_text())
    failed = {c["id"] for c in document["cases"] if c["verdict"] == "fail"}
    assert set(get_fault(name).cases) <= failed


def _forms(secret: bytes) -> list[bytes]:
    b64 = base64.b64encode(secret)
    forms = [secret, secret.hex().encode(), secret.hex().upper().encode(), b64, b64.rstrip(b"=")]
    forms.append(base64.urlsafe_b64encode(secret).rstrip(b"="))
    return forms


def test_delivered_keys_never_reach_an_output_file(tmp_path: Path) -> None:
    config = tmp_path / "rotating.toml"
    config.write_text(
        '[protection]\nencryption = "message"\nrotate_trk = true\nrotate_ink = true\n'
    )
    out = tmp_path / "reports"
    with embedded_kms([], None, str(config)) as (target_file, _label):
        done = subprocess.run(
            [*CLI, "run", "--target", str(target_file), "--output", str(out), "--cases", "ROT-*"],
            capture_output=True,
            timeout=300,
            env=ENV,
            text=True,
        )
        stored = json.loads((target_file.parent / "secrets.json").read_text())
    assert done.returncode == 0, done.stdout[-3000:]
    delivered = []
    for entry in stored["users"].values():
        seed = bytes.fromhex(entry["next_trk"])
        for generation in range(1, 6):
            delivered.append(generation_key(seed, "trk", generation, 16))
            delivered.append(generation_key(seed, "ink", generation, 32))
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 10
    for path in files:
        data = path.read_bytes()
        for key in delivered:
            for form in _forms(key):
                assert form not in data, f"a delivered key reached {path}"
    html = (out / "report.html").read_text()
    assert "UE keys of user 1 before" in html and "adopted" in html
    case = json.loads((out / "evidence" / "ROT-TRK-001" / "case.json").read_text())
    assert case["steps"][0]["ue_keys"]["delivered"][0]["fingerprint"].startswith("sha256:")


def test_a_binding_to_no_earlier_step_is_a_broken_case_file(tmp_path: Path) -> None:
    broken = tmp_path / "rotation.yaml"
    broken.write_text(
        "area: rotation\ntitle: t\ncases:\n  - id: ROT-X-001\n    title: t\n"
        "    reqs: [REQ-129]\n    clause: c\n    steps:\n      - request: init\n"
        "        label: first\n      - request: keyprov\n        body: request\n"
        '        fields: {TrK-ID: "${nowhere.previous_trk_id}"}\n'
    )
    with pytest.raises(CaseFileError, match="no earlier step is labelled 'nowhere'"):
        load_file(broken, _schema(ROOT / "testcases"))


def _run_with(target: Any, cases: list[Any], **settings: str) -> dict[str, Any]:
    profile = replace(get_profile(target.profile.release), **settings)
    runner = Runner(target, profile)
    try:
        return {case.id: runner.run_case(case) for case in cases}
    finally:
        runner.close()


def test_the_profile_decides_which_key_judges_the_delivering_response(tmp_path: Path) -> None:
    config = {"protection": {"encryption": "message", "rotate_trk": True, "rotate_ink": True}}
    cases = [c for c in ROTATION if c.id == "ROT-INK-001"]
    with served(tmp_path, "ts33180-r17", config) as target:
        held = _run_with(target, cases)
        delivered = _run_with(target, cases, delivering_response_keys="delivered")
    assert held["ROT-INK-001"].verdict is Verdict.PASS
    # refkms signs the delivering response with the InK the UE held before it: a profile
    # that wants it signed with the delivered InK fails it, by the state check.
    result = delivered["ROT-INK-001"]
    assert result.verdict is Verdict.FAIL
    failed = {c.name for c in result.checks if c.outcome is Outcome.VIOLATION}
    assert "state.delivery-protection" in failed


def test_the_profile_decides_how_an_old_trk_id_is_handled(tmp_path: Path) -> None:
    config = {"protection": {"encryption": "message", "rotate_trk": True}}
    cases = [c for c in ROTATION if c.id == "ROT-TRK-002"]
    with served(tmp_path, "ts33180-r17", config) as target:
        either = _run_with(target, cases)["ROT-TRK-002"]
        served_ = _run_with(target, cases, old_trk_id_after_rotation="served")["ROT-TRK-002"]
        refused = _run_with(target, cases, old_trk_id_after_rotation="refused")["ROT-TRK-002"]

    def outcome(result: Any) -> Outcome:
        return next(c.outcome for c in result.checks if c.name == "state.old-trk-id")

    assert outcome(either) is Outcome.OK
    assert outcome(served_) is Outcome.OK
    # refkms serves the old TrK (REQ-129): a profile wanting a refusal warns (inferred rule).
    assert outcome(refused) is Outcome.WARNING


def test_serve_rotate_claims_rotation_in_its_target_file(tmp_path: Path) -> None:
    import time
    import tomllib

    state = tmp_path / "state"
    process = subprocess.Popen(
        [*CLI, "serve", "--state", str(state), "--port", "0", "--rotate", "trk,ink"],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (state / "target.toml").is_file():
            assert process.poll() is None, "serve --rotate exited"
            assert time.monotonic() < deadline, "no target.toml within 60 s"
            time.sleep(0.1)
        pics = tomllib.loads((state / "target.toml").read_text())["pics"]
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert pics["trk_rotation"] is True and pics["ink_rotation"] is True
    assert pics["tk_ik_delivery"] is True


def test_serve_rotate_rejects_an_unknown_key_kind(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "serve", "--state", str(tmp_path), "--rotate", "trk,sek"],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
    )
    assert done.returncode == 2
    assert "--rotate 'trk,sek': give trk, ink or trk,ink" in done.stderr


def test_a_kms_claiming_rotation_that_delivers_nothing_is_inconc(tmp_path: Path) -> None:
    """A KMS "may" deliver a new TrK (D.3.1): not delivering is no failure, but the later
    steps cannot be judged, so the case is inconc with the reason."""
    with served(tmp_path, "ts33180-r17", {"protection": {"encryption": "message"}}) as target:
        claiming = replace(target, pics=replace(target.pics, trk_rotation=True))
        results = run_cases(claiming, [c for c in ROTATION if c.id == "ROT-TRK-001"])
    result = results["ROT-TRK-001"]
    assert result.verdict is Verdict.INCONC
    assert result.reason.startswith("rotate: no NewTransportKey the UE could adopt")
    assert "may deliver" in result.reason
    assert len(result.steps) == 1
