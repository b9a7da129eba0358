"""The KMS's own certificate replaced during a run (issue 12, PICS kms_cert_rotation).

The reference KMS serves over real HTTPS on loopback with ``kms_cert_rotation = true``;
the harness runs the target file's ``[pixit] kms_cert_rotation_command`` (``python -m
refkms kms-cert --state DIR``) with ``replace`` / ``restore``. The ROT-CERT cases must pass
there, be n/a with the reason where the PICS or the PIXIT is missing, give inconc with one
line when the command fails, restore the certificate when a case ends early, and leave
the run-wide certificate good for the cases after them.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from test_fault_matrix import run_cases, served

from conformance.catalogue.cases import (
    CaseFileError,
    _schema,
    catalogue_dir,
    load_catalogue,
    load_file,
)
from conformance.profiles import get_profile
from conformance.run.engine import Runner
from conformance.target.file import Target, load_target
from conformance.verdicts.outcomes import Verdict
from conformance.verdicts.results import case_from_wire, case_to_wire

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "conformance.run.cli"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
CATALOGUE = {c.id: c for c in load_catalogue()}
CERT_CASES = [CATALOGUE["ROT-CERT-001"], CATALOGUE["ROT-CERT-002"]]
ROTATING = {"kms_cert_rotation": True}


def _with_command(target: Target, command: str | None) -> Target:
    return replace(target, pixit=replace(target.pixit, kms_cert_rotation_command=command))


def _generation(target: Target) -> str:
    command = target.pixit.kms_cert_rotation_command
    assert command is not None
    state = Path(shlex.split(command)[-1])
    return (state / "kms-cert-generation").read_text().strip()


def test_cert_cases_pass_and_later_cases_meet_the_original_certificate(tmp_path: Path) -> None:
    with served(tmp_path, "ts33180-r17", ROTATING) as target:
        assert target.pics.kms_cert_rotation and target.pixit.kms_cert_rotation_command
        later = [CATALOGUE["KEYPROV-ECCSI-001"], CATALOGUE["KEYPROV-SAKKE-001"]]
        results = run_cases(target, [*CERT_CASES, *later])
        generation = _generation(target)
    for result in results.values():
        assert result.verdict is Verdict.PASS, (result.id, result.reason)
    replaced = next(
        c for c in results["ROT-CERT-001"].checks if c.name == "state.kms-cert-replaced"
    )
    assert replaced.message.startswith("a new certificate")
    controls = results["ROT-CERT-001"].controls
    assert [c["action"] for c in controls] == [
        "replace-kms-certificate",
        "restore-kms-certificate",
    ]
    assert all(c["exit_status"] == 0 and not c["cleanup"] for c in controls)
    assert controls[0]["command"].endswith(" replace")
    assert "\n" not in controls[0]["output"] and controls[0]["output"]
    # An xdist worker sends its results in the wire form: the control records go too.
    wire = json.loads(json.dumps(case_to_wire(results["ROT-CERT-001"])))
    assert case_from_wire(wire).controls == controls
    assert generation == "0"  # restored: the KMS serves the certificate the run began with


def test_cert_cases_are_na_by_pics_and_by_pixit_with_the_reason(tmp_path: Path) -> None:
    with served(tmp_path, "ts33180-r17", {}) as target:
        unclaimed = run_cases(target, CERT_CASES)
        claimed = replace(target, pics=replace(target.pics, kms_cert_rotation=True))
        no_command = run_cases(_with_command(claimed, None), CERT_CASES)
    for result in unclaimed.values():
        assert result.verdict is Verdict.NA
        assert result.reason.startswith("PICS: the target does not claim kms_cert_rotation")
    for result in no_command.values():
        assert result.verdict is Verdict.NA
        assert result.reason == "PIXIT: needs [pixit] kms_cert_rotation_command in the target file"


def test_a_failing_command_gives_inconc_with_one_line(tmp_path: Path) -> None:
    failing = "echo progress; echo 'no console' >&2; echo 'KMS console refused the change' >&2"
    failing += "; exit 3; :"  # ':' swallows the argument the harness adds
    with served(tmp_path, "ts33180-r17", ROTATING) as target:
        results = run_cases(_with_command(target, failing), CERT_CASES)
    for result in results.values():
        assert result.verdict is Verdict.INCONC, (result.id, result.reason)
        assert result.reason == (
            "replace: kms_cert_rotation_command replace exited with status 3: "
            "KMS console refused the change"
        )
        assert [c["action"] for c in result.controls] == ["replace-kms-certificate"]
        assert result.controls[0]["output"] == "progress"  # one line kept, nothing more


def test_a_case_ending_early_still_restores_the_certificate(tmp_path: Path) -> None:
    # Step "keyprov" binds a TrK nothing delivered: the case stops there (inconc), before
    # its own restore step; the harness restores as the case ends.
    case_file = tmp_path / "cases" / "rotation.yaml"
    case_file.parent.mkdir()
    case_file.write_text(
        """\
area: rotation
title: early end
cases:
  - id: ROT-CERT-901
    title: replaced, then a step that cannot be sent
    reqs: [REQ-070]
    clause: "D.3.1"
    changes_state: true
    steps:
      - {request: init, label: first}
      - {request: control, label: replace, action: replace-kms-certificate}
      - request: keyprov
        body: request
        fields: {TrK-ID: "${first.new_trk_id}"}
      - {request: control, label: restore, action: restore-kms-certificate}
""",
        encoding="utf-8",
    )
    (case,) = load_file(case_file, _schema(catalogue_dir()))
    log = tmp_path / "control.log"
    with served(tmp_path / "kms", "ts33180-r17", ROTATING) as target:
        real = target.pixit.kms_cert_rotation_command
        logged = f'sh -c \'echo "$1" >> {log}; exec {real} "$1"\' _'
        logged_target = _with_command(target, logged)
        runner = Runner(logged_target, get_profile(target.profile.release))
        try:
            result = runner.run_case(case)
        finally:
            runner.close()
        generation = _generation(target)
    assert result.verdict is Verdict.INCONC, result.reason
    assert log.read_text().split() == ["replace", "restore"]
    assert result.controls[-1]["cleanup"] is True and result.controls[-1]["exit_status"] == 0
    assert generation == "0"


def test_a_run_shows_what_it_ran_and_leaks_no_secret(tmp_path: Path) -> None:
    config = {**ROTATING, "protection": {"encryption": "message"}}
    out = tmp_path / "reports"
    state = tmp_path / "kms"
    with served(state, "ts33180-r17", config) as target:
        done = subprocess.run(
            [
                *CLI,
                "run",
                "--target",
                str(state / "target.toml"),
                "--output",
                str(out),
                "--cases",
                "ROT-CERT-*",
                "KEYPROV-SAKKE-001",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env=ENV,
            cwd=tmp_path,
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert {c["id"]: c["verdict"] for c in results["cases"]} == {
        "ROT-CERT-001": "pass",
        "ROT-CERT-002": "pass",
        "KEYPROV-SAKKE-001": "pass",
    }
    evidence = json.loads((out / "evidence" / "ROT-CERT-001" / "case.json").read_text())
    assert [c["action"] for c in evidence["controls"]] == [
        "replace-kms-certificate",
        "restore-kms-certificate",
    ]
    # The HTML report shows what each control step ran and how it ended.
    html = (out / "report.html").read_text()
    (case_html,) = [
        part.split("</details>")[0]
        for part in html.split('<details class="case"')[1:]
        if 'data-case="ROT-CERT-001"' in part.split(">")[0]
    ]
    assert "control: " in case_html and "replace-kms-certificate" in case_html
    assert "restore-kms-certificate" in case_html and "exit 0" in case_html
    assert evidence["controls"][0]["command"] in case_html
    secrets = _secrets_of(target) + _master_secrets(state)
    assert len(secrets) >= 8  # tokens, TrK, InK, both certificates' master secrets
    written = [p for p in out.rglob("*") if p.is_file()]
    assert len(written) > 10
    for path in written:
        data = path.read_bytes()
        for secret in secrets:
            assert secret not in data, f"{path} holds a secret"


def _secrets_of(target: Target) -> list[bytes]:
    found = []
    for user in target.users:
        if user.token is not None:
            found.append(user.token.reveal())
        for key in (user.trk, user.ink):
            if key is not None:
                raw = key.key.reveal()
                found += [raw.hex().encode(), raw.hex().upper().encode(), base64.b64encode(raw)]
    return found


def _master_secrets(state: Path) -> list[bytes]:
    found = []
    for name in ("secrets.json", "replacement-secrets.json"):
        path = state / name
        if path.is_file():
            found += [v.encode() for v in _hex_values(json.loads(path.read_text()))]
    return [f for f in found if len(f) >= 16]


def _hex_values(tree: object) -> list[str]:
    if isinstance(tree, dict):
        return [v for item in tree.values() for v in _hex_values(item)]
    return [tree] if isinstance(tree, str) else []


BROKEN_STEPS = {
    "no action": "{request: control, label: replace}",
    "checks on a control step": (
        "{request: control, action: replace-kms-certificate, checks: [envelope.root]}"
    ),
    "an unknown action": "{request: control, action: reboot-kms}",
    "action on a request step": "{request: init, action: replace-kms-certificate}",
}


def test_the_loader_rejects_broken_control_steps(tmp_path: Path) -> None:
    for what, step in BROKEN_STEPS.items():
        path = tmp_path / "rotation.yaml"
        path.write_text(
            "area: rotation\ntitle: broken\ncases:\n  - id: ROT-CERT-902\n    title: t\n"
            "    reqs: [REQ-070]\n"
            f'    clause: "D.3.1"\n    steps:\n      - {step}\n',
            encoding="utf-8",
        )
        with pytest.raises(CaseFileError) as caught:
            load_file(path, _schema(catalogue_dir()))
        message = str(caught.value)
        assert message.startswith(f"{path}:9: "), (what, message)
        assert "\n" not in message
    # A control step sends no KMS request: it is no request type of the case.
    assert CATALOGUE["ROT-CERT-002"].request_types == ("init", "cert", "certcache")


def test_serve_cert_rotation_claims_the_pics_and_names_the_command(tmp_path: Path) -> None:
    state = tmp_path / "state"
    server = subprocess.Popen(
        [*CLI, "serve", "--cert-rotation", "--state", str(state)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 60
        while not (state / "target.toml").is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        target = load_target(state / "target.toml")
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert target.pics.kms_cert_rotation is True
    command = target.pixit.kms_cert_rotation_command
    assert command is not None and command.endswith(f"-m refkms kms-cert --state {state}")
    done = subprocess.run(
        f"{command} replace", shell=True, capture_output=True, text=True, timeout=60, env=ENV
    )
    assert done.returncode == 0 and done.stdout.count("\n") == 1, done.stdout + done.stderr
    assert (state / "kms-cert-generation").read_text().strip() == "1"


def test_pytest_xdist_refuses_state_changes_it_cannot_run_alone(tmp_path: Path) -> None:
    state = tmp_path / "kms"
    with served(state, "ts33180-r17", ROTATING):
        argv = [sys.executable, "-m", "pytest", "-p", "conformance.run.plugin", "-p", "xdist"]
        argv += ["--kms-target", str(state / "target.toml"), str(catalogue_dir())]
        argv += ["-n", "2", "-q", "-p", "no:cacheprovider", "--rootdir", str(catalogue_dir())]
        argv += ["-k", "ROT-CERT or KEYPROV-SAKKE-001"]
        refused = subprocess.run(
            [*argv, "--kms-output", str(tmp_path / "refused")],
            capture_output=True,
            text=True,
            timeout=300,
            env=ENV,
            cwd=tmp_path,
        )
        kept = subprocess.run(
            [*argv, "-m", "not kms_changes_state", "--kms-output", str(tmp_path / "kept")],
            capture_output=True,
            text=True,
            timeout=300,
            env=ENV,
            cwd=tmp_path,
        )
    # Each state-changing case is an error that says why and what to do; it sent nothing,
    # so the case that ran beside it met the KMS as it was.
    assert refused.returncode == pytest.ExitCode.TESTS_FAILED, refused.stdout + refused.stderr
    cases = json.loads((tmp_path / "refused" / "results.json").read_text())["cases"]
    verdicts = {c["id"]: (c["verdict"], c["reason"]) for c in cases}
    assert verdicts["KEYPROV-SAKKE-001"][0] == "pass"
    for case_id in ("ROT-CERT-001", "ROT-CERT-002"):
        verdict, reason = verdicts[case_id]
        assert verdict == "error" and "must run alone" in reason, (case_id, reason)
    assert not list((tmp_path / "refused" / "evidence" / "ROT-CERT-001").glob("*/request.txt"))
    assert "Traceback" not in refused.stdout + refused.stderr
    assert kept.returncode == 0, kept.stdout[-2000:] + kept.stderr[-2000:]
    cases = json.loads((tmp_path / "kept" / "results.json").read_text())["cases"]
    assert [(c["id"], c["verdict"]) for c in cases] == [("KEYPROV-SAKKE-001", "pass")]
