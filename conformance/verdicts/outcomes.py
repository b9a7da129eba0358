"""Check outcomes and case verdicts (DESIGN.md section 3).

A check returns a ``CheckResult``; a case folds its check results into one ``Verdict``.
Verdicts only get worse during a case, so folding is a maximum over a fixed order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class Outcome(StrEnum):
    OK = "ok"
    VIOLATION = "violation"
    WARNING = "warning"
    SKIPPED = "skipped"


class Strength(StrEnum):
    SHALL = "shall"
    SHOULD = "should"
    MAY = "may"


class Verdict(StrEnum):
    PASS = "pass"
    NA = "n/a"
    INCONC = "inconc"
    FAIL = "fail"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _VERDICT_RANK[self]


_VERDICT_RANK = {
    Verdict.PASS: 0,
    Verdict.NA: 1,
    Verdict.INCONC: 2,
    Verdict.FAIL: 3,
    Verdict.ERROR: 4,
}


@dataclass(frozen=True)
class CheckResult:
    """What one named check concluded, with expected vs observed for the report."""

    name: str
    outcome: Outcome
    message: str
    reqs: tuple[str, ...] = ()
    clause: str = ""
    strength: Strength = Strength.SHALL
    expected: str = ""
    observed: str = ""
    inferred: bool = False
    details: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.outcome is Outcome.VIOLATION


def worse(a: Verdict, b: Verdict) -> Verdict:
    return a if a.rank >= b.rank else b


def fold_checks(results: Iterable[CheckResult], *, strict: bool = False) -> Verdict:
    """The case verdict its checks give: a violated shall fails, warnings pass unless strict.

    A violation of a ``should`` or inferred rule is reported as a warning by the check
    itself; ``strict`` turns warnings into failures (``run --strict``).
    """
    verdict = Verdict.PASS
    for result in results:
        if result.outcome is Outcome.VIOLATION or (strict and result.outcome is Outcome.WARNING):
            verdict = worse(verdict, Verdict.FAIL)
    return verdict
