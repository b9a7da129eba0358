"""The check machinery: a registry of small named checks, each tagged with REQ ids.

A check is a function of a ``CheckContext`` returning a ``Finding`` (ok, violation or
skipped with a reason). ``run_check`` turns that into a ``CheckResult`` carrying the
check's REQ ids, clause and strength; a violated ``should`` or inferred rule becomes a
warning there, so check functions never decide severity themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from conformance.exchange import Exchange
from conformance.model import KmsCertificate, KmsResponse
from conformance.profiles import Profile
from conformance.target import Target, User
from conformance.verdicts import CheckResult, Outcome, Strength

_T = TypeVar("_T")


class HarnessError(RuntimeError):
    """The harness itself failed while checking; the case verdict is ``error``."""


@dataclass(frozen=True)
class Finding:
    outcome: Outcome
    message: str
    expected: str = ""
    observed: str = ""


def ok(message: str, expected: str = "", observed: str = "") -> Finding:
    return Finding(Outcome.OK, message, expected, observed)


def violation(message: str, expected: str = "", observed: str = "") -> Finding:
    return Finding(Outcome.VIOLATION, message, expected, observed)


def skipped(reason: str) -> Finding:
    return Finding(Outcome.SKIPPED, reason)


@dataclass(frozen=True)
class HttpFacts:
    """What a check may know of the HTTP exchange (the probe records more)."""

    status: int
    headers: dict[str, str]
    body: bytes
    path: str
    content_type: str = ""


@dataclass
class CheckContext:
    """Everything a check may look at for one response."""

    profile: Profile
    request_type: str | None = None
    response: KmsResponse | None = None
    raw: KmsResponse | None = None
    http: HttpFacts | None = None
    init_certificate: KmsCertificate | None = None
    user: User | None = None
    expected_user_uri: str | None = None
    request_instant: datetime | None = None
    requested_ntp: int | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    allowed_skew_s: float = 300.0
    params: dict[str, Any] = field(default_factory=dict)
    memo: dict[str, Any] = field(default_factory=dict)
    # Live runs only (None offline): the probe's record of this step's exchange, what the
    # security step found (conformance.protection.ProtectionFacts), the target file, and the
    # earlier steps of the same case, oldest first (conformance.engine.StepView).
    exchange: Exchange | None = None
    protection: Any = None
    target: Target | None = None
    history: list[Any] = field(default_factory=list)


def own_kms_uri(ctx: CheckContext) -> str | None:
    """The KMS URI of the KMS under test: the Root certificate's, else the one the user
    gave (``check --kms-uri``)."""
    if ctx.init_certificate is not None and ctx.init_certificate.kms_uri:
        return ctx.init_certificate.kms_uri
    given = ctx.params.get("kms_uri")
    return given if isinstance(given, str) and given else None


CheckFunction = Callable[[CheckContext], Finding]


@dataclass(frozen=True)
class CheckSpec:
    name: str
    reqs: tuple[str, ...]
    clause: str
    strength: Strength
    inferred: bool
    summary: str
    function: CheckFunction

    @property
    def severity_on_violation(self) -> Outcome:
        if self.strength is Strength.SHALL and not self.inferred:
            return Outcome.VIOLATION
        return Outcome.WARNING


REGISTRY: dict[str, CheckSpec] = {}


def check(
    name: str,
    *,
    reqs: tuple[str, ...],
    clause: str,
    strength: Strength = Strength.SHALL,
    inferred: bool = False,
) -> Callable[[CheckFunction], CheckFunction]:
    """Register a check under a stable name (used by the case catalogue)."""

    def register(function: CheckFunction) -> CheckFunction:
        if name in REGISTRY:
            raise HarnessError(f"check {name!r} registered twice")
        summary = (function.__doc__ or name).strip().splitlines()[0]
        REGISTRY[name] = CheckSpec(name, reqs, clause, strength, inferred, summary, function)
        return function

    return register


def run_check(name: str, context: CheckContext) -> CheckResult:
    spec = REGISTRY.get(name)
    if spec is None:
        raise HarnessError(f"unknown check {name!r}")
    try:
        finding = spec.function(context)
    except HarnessError:
        raise
    except Exception as exc:  # a bug in a check must not pass for a verdict on the KMS
        raise HarnessError(f"check {name} crashed: {type(exc).__name__}: {exc}") from exc
    outcome = finding.outcome
    if outcome is Outcome.VIOLATION:
        outcome = spec.severity_on_violation
    return CheckResult(
        name=spec.name,
        outcome=outcome,
        message=finding.message,
        reqs=spec.reqs,
        clause=spec.clause,
        strength=spec.strength,
        expected=finding.expected,
        observed=finding.observed,
        inferred=spec.inferred,
    )


def message_content(ctx: CheckContext, kind: type[_T]) -> _T | None:
    """The child of ``KmsMessage`` (after decryption) if it is of the given model type."""
    message = ctx.response.kms_message if ctx.response else None
    content = message.content if message else None
    return content if isinstance(content, kind) else None


def content_name(ctx: CheckContext) -> str:
    """What ``KmsMessage`` holds, for a violation's observed value."""
    message = ctx.response.kms_message if ctx.response else None
    if message is None:
        return "no KmsMessage"
    return ", ".join(c.local for c in message.children) or "empty KmsMessage"


def first_violation(
    items: Sequence[_T],
    rule: Callable[[_T], str | None],
    label: Callable[[int, _T], str],
    noun: str,
    summary: str,
) -> Finding:
    """Apply ``rule`` to each item; the first problem found is the violation, labelled."""
    if not items:
        return skipped(f"no {noun} to check")
    for index, item in enumerate(items, start=1):
        problem = rule(item)
        if problem is not None:
            return violation(f"{label(index, item)}: {problem}", observed=problem)
    return ok(f"{summary} ({len(items)} {noun}(s))")


def shorten(value: str | None, limit: int = 80) -> str:
    """A value as a report shows it: absent is spelt out, long values are cut."""
    if value is None:
        return "(absent)"
    return value if len(value) <= limit else f"{value[: limit - 12]}...({len(value)} chars)"
