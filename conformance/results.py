"""What a run produced: the in-memory form every reporter writes out (DESIGN.md 5 and 6).

``RunResult`` holds one ``CaseResult`` per case, each with its check results, its
exchanges and any decrypted plaintext. Secrets are still raw here; reporters redact with
``RunResult.secrets`` before anything reaches a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from conformance.exchange import Exchange
from conformance.verdicts import CheckResult, Verdict


@dataclass(frozen=True)
class SecretValue:
    """A secret the run used, with the label a redaction marker shows (trk, ink, token...)."""

    label: str
    value: bytes


@dataclass
class StepRecord:
    """One step of a case: the exchange and, when decrypted, the plaintext of KmsMessage."""

    label: str
    exchange: Exchange
    plaintext: bytes | None = None
    checks: list[CheckResult] = field(default_factory=list)


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

    def summary(self) -> dict[str, int]:
        counts = {v.value: 0 for v in Verdict}
        for case in self.cases:
            counts[case.verdict.value] += 1
        counts["warnings"] = sum(c.warnings for c in self.cases)
        return counts
