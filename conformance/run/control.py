"""Control steps: the harness has the target change its own state (``request: control``).

A KMS replaces its own certificate (new master keys: a new PubEncKey and/or PubAuthKey)
through no request of Annex D, so the tester says how it is done: the target file's
``[pixit] kms_cert_rotation_command``, a shell command the harness runs with one argument,
``replace`` (``action: replace-kms-certificate``) or ``restore`` (``action:
restore-kms-certificate``: put back the certificate the run started with). The command
gets no secret: its command line is the target file's text and the action word, nothing
the harness holds. It runs with a timeout; a non-zero exit, a timeout or a command that
cannot start makes the case ``inconc`` with a one-line reason, and only one line of its
output (the last, cut to 200 characters) is kept, in ``evidence/<case>/case.json``.

A case that replaced the certificate and did not restore it (a step failed first) gets the
restore run when it ends, so the cases after it are judged with the certificate the run
learnt from its first KMS Initialize (every lane caches that one, engine.Runner).

``CertificateView`` is what the steps of one case judge key sets and certificates against:
the run-wide certificate until a control step changes it, then the certificate of the
case's own latest KMS Initialize after the change (none yet: the checks that need one are
skipped with the reason).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from conformance.catalogue.cases import Step
from conformance.model.messages import KmsCertificate, KmsInit, KmsResponse
from conformance.target.file import Target
from conformance.verdicts.outcomes import Verdict
from conformance.verdicts.results import CaseResult

# action -> the argument the command gets
ACTIONS = {"replace-kms-certificate": "replace", "restore-kms-certificate": "restore"}
COMMAND_PIXIT = "kms_cert_rotation_command"
TIMEOUT_S = 60.0
_LINE = 200
# Where the engine puts the certificate from before the change, for the checks.
CERTIFICATE_BEFORE = "kms_certificate_before"
CERTIFICATE_CHANGED = "kms_certificate_changed"


class ControlFailed(Exception):
    """The control command failed; the message is the one-line reason."""


@dataclass
class ControlRecord:
    """What one control step ran: no secret (the command line holds none)."""

    label: str
    action: str
    command: str
    exit_status: int | None = None
    duration_s: float = 0.0
    output: str = ""  # one line
    problem: str | None = None
    cleanup: bool = False  # run by the harness as the case ended

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "action": self.action,
            "command": self.command,
            "exit_status": self.exit_status,
            "duration_s": round(self.duration_s, 3),
            "output": self.output,
            "problem": self.problem,
            "cleanup": self.cleanup,
        }


def run_control(target: Target, action: str, label: str, *, cleanup: bool = False) -> ControlRecord:
    """Run the target's command for ``action``; the record says how it went."""
    command = getattr(target.pixit, COMMAND_PIXIT)
    argument = ACTIONS[action]
    line = f"{command} {argument}" if command else ""
    record = ControlRecord(label, action, line, cleanup=cleanup)
    if not command:
        record.problem = f"needs [pixit] {COMMAND_PIXIT} in the target file"
        return record
    started = time.monotonic()
    try:
        done = subprocess.run(
            line,
            shell=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        record.problem = f"{COMMAND_PIXIT} {argument} did not end within {TIMEOUT_S:g} s"
    except OSError as exc:
        record.problem = f"{COMMAND_PIXIT} {argument} could not run: {exc.strerror or exc}"
    else:
        record.exit_status = done.returncode
        record.output = _last_line(done.stdout) or _last_line(done.stderr)
        if done.returncode != 0:
            said = _last_line(done.stderr) or record.output
            record.problem = f"{COMMAND_PIXIT} {argument} exited with status {done.returncode}" + (
                f": {said}" if said else ""
            )
    record.duration_s = time.monotonic() - started
    return record


def control_step(
    target: Target,
    step: Step,
    result: CaseResult,
    certificates: CertificateView,
    run_wide: KmsCertificate | None,
    *,
    live: bool,
) -> str | None:
    """Run one control step of a case; the one-line reason when it failed (inconc)."""
    if not live:
        return "a control step is not replayed (it has the target change its state)"
    action = str(step.spec["action"])
    record = run_control(target, action, step.label)
    result.controls.append(record.as_dict())
    if record.problem is not None:
        return record.problem
    certificates.control_done(action, run_wide)
    return None


def restore_if_pending(target: Target, result: CaseResult) -> None:
    """A case that replaced the KMS certificate and ended before restoring it: restore
    now, so the later cases meet the certificate the run started with."""
    if not pending_restore(result.controls):
        return
    record = run_control(target, "restore-kms-certificate", "restore", cleanup=True)
    result.controls.append(record.as_dict())
    if record.problem is not None and result.verdict in (Verdict.PASS, Verdict.NA):
        result.verdict = Verdict.INCONC
        result.reason = f"restore: {record.problem}; the later cases may meet the new certificate"


def pending_restore(records: list[dict[str, Any]]) -> bool:
    """A replacement ran (``ControlRecord.as_dict`` entries) and no restore since."""
    pending = False
    for record in records:
        if record["problem"] is None:
            pending = record["action"] == "replace-kms-certificate"
    return pending


@dataclass
class CertificateView:
    """The KMS certificate the UE holds at each step of one case."""

    changed: bool = False
    before: KmsCertificate | None = None
    after: KmsCertificate | None = None
    notes: list[str] = field(default_factory=list)

    def control_done(self, action: str, run_wide: KmsCertificate | None) -> None:
        if action == "replace-kms-certificate":
            if not self.changed:
                self.before = self.after or run_wide
            self.changed, self.after = True, None
        else:  # restored: the run-wide certificate holds again
            self.changed, self.after, self.before = False, None, None

    def seen(self, request: str, response: KmsResponse | None) -> None:
        """An init step: the UE now holds the certificate it returned."""
        if request != "init" or response is None or response.kms_message is None:
            return
        content = response.kms_message.content
        if isinstance(content, KmsInit) and content.certificates:
            self.after = content.certificates[0]

    def current(self, run_wide: KmsCertificate | None) -> KmsCertificate | None:
        return self.after if self.changed else run_wide

    def params(self) -> dict[str, Any]:
        return {CERTIFICATE_CHANGED: self.changed, CERTIFICATE_BEFORE: self.before}


def control_explained(spec: Any) -> str:
    """What ``explain`` says of a control step."""
    action = str(spec["action"])
    return (
        f"control {action}: runs [pixit] {COMMAND_PIXIT} {ACTIONS[action]} (fails: inconc; "
        "later steps judge against the certificate of the case's own KMS Initialize after it)"
    )


def _last_line(data: bytes) -> str:
    lines = [ln.strip() for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    if not lines:
        return ""
    line = " ".join(lines[-1].split())
    return line if len(line) <= _LINE else line[: _LINE - 3] + "..."
