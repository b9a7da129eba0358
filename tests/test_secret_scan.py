"""A real run leaves no secret in any file it writes (issue 5 item 6, DESIGN.md 6).

The reference KMS is served on its own; a run against it (Allure on) writes every report;
then every file under the output folder, Allure attachments included, is scanned for the
target file's tokens, TrK and InK and for the user's RSK, in raw, hex (both cases), base64
and base64url form. Private key elements must only ever hold redaction markers.
"""

from __future__ import annotations

import base64
import os
import re
import ssl
import subprocess
import sys
from pathlib import Path

import httpx

from conformance.run.runcmd import embedded_kms
from conformance.target.file import load_target

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "conformance.run.cli"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
KEY_ELEMENT = re.compile(
    rb"<(?:\w+:)?(UserDecryptKey|UserSigningKeySSK)\b[^>]*>\s*([0-9A-Fa-f]{16,})", re.S
)


def _forms(secret: bytes) -> list[bytes]:
    forms = [secret, secret.hex().encode(), secret.hex().upper().encode()]
    b64 = base64.b64encode(secret)
    forms += [b64, b64.rstrip(b"="), base64.urlsafe_b64encode(secret).rstrip(b"=")]
    return [f for f in forms if len(f) >= 8]


def test_no_secret_reaches_any_output_file(tmp_path: Path) -> None:
    with embedded_kms([]) as (target_file, _label):
        target = load_target(target_file)
        out = tmp_path / "reports"
        cases = ["INIT-*", "KEYPROV-*", "ERR-AUTH-*", "SEC-SIG-*", "REQUEST-SIG-*"]
        done = subprocess.run(
            [
                *CLI,
                "run",
                "--target",
                str(target_file),
                "--output",
                str(out),
                "--cases",
                *cases,
            ],
            capture_output=True,
            timeout=600,
            env=ENV,
        )
        assert done.returncode == 0, done.stdout[-3000:]
        rsk = _rsk_of_user_one(target)

    secrets: dict[str, bytes] = {"rsk": rsk}
    for number, user in enumerate(target.users, start=1):
        if user.token is not None:
            secrets[f"token{number}"] = user.token.reveal()
        if user.trk is not None:
            secrets[f"trk{number}"] = user.trk.key.reveal()
        if user.ink is not None:
            secrets[f"ink{number}"] = user.ink.key.reveal()
    for name in ("expired", "wrong_scope", "bad_signature"):
        token = getattr(target.tokens, name)
        if token is not None:
            secrets[name] = token.reveal()

    files = [p for p in out.rglob("*") if p.is_file()]
    assert any("allure-results" in str(p) and "attachment" in p.name for p in files)
    assert len(files) > 100
    leaks = []
    for path in files:
        data = path.read_bytes()
        for name, secret in secrets.items():
            if any(form in data for form in _forms(secret)):
                leaks.append(f"{path.relative_to(out)}: {name}")
        leaks += [
            f"{path.relative_to(out)}: bare {m.group(1).decode()}"
            for m in KEY_ELEMENT.finditer(data)
        ]
    for stream in (done.stdout, done.stderr):
        leaks += [
            f"console: {n}" for n, s in secrets.items() if any(f in stream for f in _forms(s))
        ]
    markers = b"".join(p.read_bytes() for p in files if p.name in ("request.txt", "response.body"))
    assert b"REDACTED-TOKEN-" in markers and b"REDACTED-RSK-sha256-" in markers  # they were there
    assert not leaks, "secrets written:\n" + "\n".join(sorted(set(leaks))[:40])


def _rsk_of_user_one(target) -> bytes:  # type: ignore[no-untyped-def]
    """The RSK the KMS issues user 1 for this period (deterministic for a period)."""
    user = target.users[0]
    response = httpx.post(
        f"{target.target.base_url}/keyprov",
        headers={"Authorization": f"Bearer {user.token.reveal().decode()}"},
        verify=ssl.create_default_context(cafile=str(target.target.ca_file)),
        timeout=30,
    )
    match = re.search(rb"UserDecryptKey[^>]*>\s*([0-9A-Fa-f]{514})", response.content)
    assert match, "no plaintext RSK in the keyprov answer"
    return bytes.fromhex(match.group(1).decode())


def test_keys_a_case_learnt_are_redacted_wherever_quoted(tmp_path: Path) -> None:
    """A key the UE store adopted (CaseResult.secrets, conformance/protection/uestate.py) is a run
    secret: quoted in a check message it reaches no report in any form."""
    from datetime import UTC, datetime

    from conformance.core.exchange import Exchange, RecordedRequest
    from conformance.report import write_reports
    from conformance.verdicts.outcomes import CheckResult, Outcome, Verdict
    from conformance.verdicts.results import CaseResult, RunResult, SecretValue, StepRecord

    new_trk = bytes(range(0xA0, 0xB0))
    quoted = f"raw {new_trk.hex()} / {base64.b64encode(new_trk).decode()}"
    check = CheckResult(name="state.trk-current", outcome=Outcome.VIOLATION, message=quoted)
    request = RecordedRequest("POST", "https://kms.test/x", "/x", (), b"", "valid", "none")
    case = CaseResult(
        id="ROT-TRK-001",
        title="t",
        area="rotation",
        verdict=Verdict.FAIL,
        reason=f"state.trk-current: {quoted}",
        reqs=("REQ-061",),
        clauses=("D.3.1",),
        request_types=("init",),
        steps=[StepRecord("rotate", Exchange("rotate", request, status=200), checks=[check])],
        checks=[check],
        secrets=[SecretValue("new-trk", new_trk)],
    )
    run = RunResult(
        started=datetime.now(UTC),
        duration_s=0.1,
        tool_version="0",
        target={},
        profile="ts33180-r17",
        pics={},
        cases=[case],
        requirements=[],
    )
    write_reports(run, tmp_path)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        for form in _forms(new_trk):
            assert form not in data, f"the learnt key reached {path}"
    assert b"REDACTED-NEW-TRK-sha256-" in (tmp_path / "results.json").read_bytes()
