"""What a run produced: the in-memory form every reporter writes out (DESIGN.md 5 and 6).

``RunResult`` holds one ``CaseResult`` per case, each with its check results, its
exchanges and any decrypted plaintext. The engine redacts a finished case at capture
(``report.redact.Capture``: its steps are then ``redacted``); reporters still pass every
string through a redactor built from ``RunResult.secrets`` before anything reaches a file.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from conformance.core.exchange import Exchange, RecordedRequest, TlsFacts
from conformance.verdicts.outcomes import CheckResult, Outcome, Strength, Verdict


@dataclass(frozen=True)
class SecretValue:
    """A secret the run used, with the label a redaction marker shows (trk, ink, token...)."""

    label: str
    value: bytes


@dataclass(frozen=True)
class BodyFacts:
    """A body after its evidence was written: what arrived, what the file holds, and how
    much of it stays in memory (``conformance.report.evidence.spill_case``)."""

    size: int  # octets sent or received
    sha256: str  # of those octets
    written: int  # octets in the evidence file (fewer when limits.max_evidence_bytes cut it)
    kept: int  # octets of the redacted excerpt kept in memory for the reports

    @property
    def cut(self) -> bool:
        return self.written < self.size


@dataclass
class StepRecord:
    """One step of a case: the exchange and, when decrypted, the plaintext of KmsMessage.

    Once the case's evidence is written, bodies here are redacted excerpts and ``bodies``
    ("request", "response", "plaintext") says what the whole ones were.
    """

    label: str
    exchange: Exchange
    plaintext: bytes | None = None
    checks: list[CheckResult] = field(default_factory=list)
    bodies: dict[str, BodyFacts] = field(default_factory=dict)
    # The UE's keys around the step (conformance/protection/uestate.py): IDs and fingerprints only.
    ue_keys: dict[str, Any] | None = None
    # True once the secrets were replaced at capture (report.redact.Capture): the
    # reporters write the bodies as they are.
    redacted: bool = False

    def all_bodies(self) -> tuple[bytes, bytes, bytes]:
        """The response body, the request body and the decrypted plaintext (b"" if none)."""
        return self.exchange.body, self.exchange.request.body, self.plaintext or b""


@dataclass
class CaseResult:
    id: str
    title: str
    area: str
    verdict: Verdict
    reason: str  # one line: why the verdict (first failing check, n/a reason, error...)
    reqs: tuple[str, ...]
    clauses: tuple[str, ...]
    request_types: tuple[str, ...]
    strength: str = "shall"
    steps: list[StepRecord] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)  # all steps, in order
    duration_s: float = 0.0
    description: str = ""  # what the case sends and expects (from the catalogue)
    # Set by conformance.catalogue.waivers when the run has a waiver file: the waiver that decided
    # this case and its status ("applied", "unexpected pass", "expired").
    waiver: dict[str, Any] | None = None
    waived: bool = False  # a fail that a waiver in force covers: it does not fail the run
    # Set when the evidence was written as the case ended (spill_case): its directory name,
    # the key material its whole bodies held (for the run's redactor) and what was cut.
    evidence_dir: str | None = None
    evidence_written: bool = False
    evidence_notes: list[str] = field(default_factory=list)
    found_secrets: list[SecretValue] = field(default_factory=list)
    # Secrets the case learnt (keys a response delivered), for the redactor: never written.
    secrets: list[SecretValue] = field(default_factory=list, repr=False)
    # What the case's control steps ran (conformance/run/control.py ControlRecord.as_dict):
    # command lines and one line of output, no secret; written to evidence case.json.
    controls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def warnings(self) -> int:
        return sum(1 for c in self.checks if c.outcome == "warning")


@dataclass
class RequirementInfo:
    id: str
    clause: str
    strength: str
    title: str
    probe_testable: bool = True
    untestable_reason: str = ""


@dataclass
class RunResult:
    started: datetime
    duration_s: float
    tool_version: str
    target: dict[str, Any]  # base_url, ca/verify facts, embedded/faults: never secrets
    profile: str
    pics: dict[str, Any]
    cases: list[CaseResult]
    requirements: list[RequirementInfo]
    strict: bool = False
    secrets: list[SecretValue] = field(default_factory=list)
    # With a waiver file (run --waivers): every waiver and what it did; None without one.
    waivers: list[dict[str, Any]] | None = None
    waiver_file: str = ""
    # Where the cases' evidence was written while they ran (renamed to evidence/ at the end)
    # and the per-run evidence budget (limits.max_evidence_bytes).
    evidence_staging: Path | None = None
    max_evidence_bytes: int | None = None

    def summary(self) -> dict[str, int]:
        counts = {v.value: 0 for v in Verdict}
        for case in self.cases:
            counts[case.verdict.value] += 1
        counts["warnings"] = sum(c.warnings for c in self.cases)
        if self.waivers is not None:  # only then, so runs without waivers read as before
            counts["waived"] = sum(1 for c in self.cases if c.waived)
            counts["unexpected_pass"] = sum(
                1 for c in self.cases if c.waiver and c.waiver["status"] == "unexpected pass"
            )
        return counts


# -- the wire form: a case result as JSON-safe data (pytest-xdist workers send it) -----


def case_to_wire(case: CaseResult) -> dict[str, Any]:
    return {
        "id": case.id,
        "title": case.title,
        "area": case.area,
        "verdict": case.verdict.value,
        "reason": case.reason,
        "reqs": list(case.reqs),
        "clauses": list(case.clauses),
        "request_types": list(case.request_types),
        "strength": case.strength,
        "duration_s": case.duration_s,
        "description": case.description,
        "checks": [_check_to_wire(c) for c in case.checks],
        "steps": [
            {
                "label": s.label,
                "exchange": _exchange_to_wire(s.exchange),
                "plaintext": _b64(s.plaintext),
                "checks": [_check_to_wire(c) for c in s.checks],
                "bodies": {k: v.__dict__ for k, v in s.bodies.items()},
                "ue_keys": s.ue_keys,
                "redacted": s.redacted,
            }
            for s in case.steps
        ],
        "evidence_dir": case.evidence_dir,
        "evidence_written": case.evidence_written,
        "evidence_notes": list(case.evidence_notes),
        "found_secrets": [[f.label, _b64(f.value)] for f in case.found_secrets],
        # Keys delivered during the case: the controller's redactor needs their values.
        "secrets": [{"label": x.label, "value": _b64(x.value)} for x in case.secrets],
        "controls": case.controls,
    }


def case_from_wire(data: dict[str, Any]) -> CaseResult:
    return CaseResult(
        id=data["id"],
        title=data["title"],
        area=data["area"],
        verdict=Verdict(data["verdict"]),
        reason=data["reason"],
        reqs=tuple(data["reqs"]),
        clauses=tuple(data["clauses"]),
        request_types=tuple(data["request_types"]),
        strength=data["strength"],
        duration_s=data["duration_s"],
        description=data["description"],
        checks=[_check_from_wire(c) for c in data["checks"]],
        steps=[
            StepRecord(
                label=s["label"],
                exchange=_exchange_from_wire(s["exchange"]),
                plaintext=_unb64(s["plaintext"]),
                checks=[_check_from_wire(c) for c in s["checks"]],
                bodies={k: BodyFacts(**v) for k, v in s.get("bodies", {}).items()},
                ue_keys=s.get("ue_keys"),
                redacted=bool(s.get("redacted", False)),
            )
            for s in data["steps"]
        ],
        evidence_dir=data.get("evidence_dir"),
        evidence_written=bool(data.get("evidence_written")),
        evidence_notes=list(data.get("evidence_notes", [])),
        found_secrets=[
            SecretValue(label, _unb64(value) or b"")
            for label, value in data.get("found_secrets", [])
        ],
        secrets=[
            SecretValue(x["label"], _unb64(x["value"]) or b"") for x in data.get("secrets", ())
        ],
        controls=list(data.get("controls", [])),
    )


def _check_to_wire(check: CheckResult) -> dict[str, Any]:
    return {
        "name": check.name,
        "outcome": check.outcome.value,
        "message": check.message,
        "reqs": list(check.reqs),
        "clause": check.clause,
        "strength": check.strength.value,
        "expected": check.expected,
        "observed": check.observed,
        "inferred": check.inferred,
        "details": dict(check.details),
    }


def _check_from_wire(data: dict[str, Any]) -> CheckResult:
    return CheckResult(
        name=data["name"],
        outcome=Outcome(data["outcome"]),
        message=data["message"],
        reqs=tuple(data["reqs"]),
        clause=data["clause"],
        strength=Strength(data["strength"]),
        expected=data["expected"],
        observed=data["observed"],
        inferred=data["inferred"],
        details=dict(data["details"]),
    )


def _exchange_to_wire(exchange: Exchange) -> dict[str, Any]:
    request = exchange.request
    tls = exchange.tls
    return {
        "label": exchange.label,
        "request": {
            "method": request.method,
            "url": request.url,
            "path": request.path,
            "headers": [list(h) for h in request.headers],
            "body": _b64(request.body),
            "token_variant": request.token_variant,
            "body_variant": request.body_variant,
        },
        "status": exchange.status,
        "reason": exchange.reason,
        "headers": [list(h) for h in exchange.headers],
        "body": _b64(exchange.body),
        "truncated": exchange.truncated,
        "elapsed_s": exchange.elapsed_s,
        "http_version": exchange.http_version,
        "tls": None if tls is None else {**tls.__dict__, "peer_san": list(tls.peer_san)},
        "error": exchange.error,
        "error_kind": exchange.error_kind,
        "notes": list(exchange.notes),
    }


def _exchange_from_wire(data: dict[str, Any]) -> Exchange:
    request = data["request"]
    tls = data["tls"]
    return Exchange(
        label=data["label"],
        request=RecordedRequest(
            method=request["method"],
            url=request["url"],
            path=request["path"],
            headers=tuple((k, v) for k, v in request["headers"]),
            body=_unb64(request["body"]) or b"",
            token_variant=request["token_variant"],
            body_variant=request["body_variant"],
        ),
        status=data["status"],
        reason=data["reason"],
        headers=tuple((k, v) for k, v in data["headers"]),
        body=_unb64(data["body"]) or b"",
        truncated=data["truncated"],
        elapsed_s=data["elapsed_s"],
        http_version=data["http_version"],
        tls=None if tls is None else TlsFacts(**{**tls, "peer_san": tuple(tls["peer_san"])}),
        error=data["error"],
        error_kind=data["error_kind"],
        notes=list(data["notes"]),
    )


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)
