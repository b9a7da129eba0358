"""The check machinery: a registry of small named checks, each tagged with REQ ids.

A check is a function of a ``CheckContext`` returning a ``Finding`` (ok, violation or
skipped with a reason). ``run_check`` turns that into a ``CheckResult`` carrying the
check's REQ ids, clause and strength; a violated ``should`` or inferred rule becomes a
warning there, so check functions never decide severity themselves. Those REQ ids, clause
and strength are data: one line a check in ``checks.toml`` beside this module, joined to
the function ``@check("name")`` declares when the module is imported.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from conformance.checks.values import hex_octets
from conformance.core.exchange import Exchange
from conformance.crypto import CryptoError, uid
from conformance.model.messages import (
    KmsCertificate,
    KmsInit,
    KmsKeyProv,
    KmsKeySet,
    KmsResponse,
    Node,
)
from conformance.profiles import Profile
from conformance.target.file import Target, User
from conformance.verdicts.outcomes import CheckResult, Outcome, Strength

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
    # security step found (conformance.protection.response.ProtectionFacts), the target file, and
    # the earlier steps of the same case, oldest first (conformance.run.engine.StepView).
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
CHECKS_TABLE = Path(__file__).with_name("checks.toml")


@dataclass(frozen=True)
class CheckMetadata:
    """What checks.toml says of one check, and the module (of this package) defining it."""

    module: str
    reqs: tuple[str, ...]
    clause: str
    strength: Strength = Strength.SHALL
    inferred: bool = False


def load_metadata(text: str, source: str = CHECKS_TABLE.name) -> dict[str, CheckMetadata]:
    """The checks table (checks.toml): ``[module]`` tables of ``"name" = { reqs, clause,
    strength, inferred }``; anything malformed is a ``HarnessError`` naming the check."""
    try:
        tables = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise HarnessError(f"{source}: {exc}") from exc
    metadata: dict[str, CheckMetadata] = {}
    for module, entries in tables.items():
        if not isinstance(entries, dict):
            raise HarnessError(f"{source}: {module!r} is not a table of checks")
        for name, entry in entries.items():
            if name in metadata:
                raise HarnessError(
                    f"{source}: check {name!r} listed under [{metadata[name].module}] "
                    f"and [{module}]"
                )
            metadata[name] = _metadata(module, entry, f"{source} [{module}] {name!r}")
    return metadata


_METADATA_KEYS = frozenset({"reqs", "clause", "strength", "inferred"})
_REQ_ID = re.compile(r"REQ-[0-9]+")


def _metadata(module: str, entry: object, where: str) -> CheckMetadata:
    if not isinstance(entry, dict):
        raise HarnessError(f"{where}: not a table {{ reqs = [...], clause = ... }}")
    unknown = sorted(set(entry) - _METADATA_KEYS)
    if unknown:
        raise HarnessError(f"{where}: unknown key(s) {', '.join(unknown)}")
    reqs = entry.get("reqs")
    if not isinstance(reqs, list) or not reqs:
        raise HarnessError(f"{where}: reqs must list at least one REQ id")
    for req in reqs:
        if not isinstance(req, str) or not _REQ_ID.fullmatch(req):
            raise HarnessError(f"{where}: {req!r} is not a REQ id (REQ-nnn)")
    clause = entry.get("clause")
    if not isinstance(clause, str) or not clause.strip():
        raise HarnessError(f"{where}: clause must be a non-empty string")
    strength = entry.get("strength", Strength.SHALL.value)
    if strength not in {s.value for s in Strength}:
        raise HarnessError(f"{where}: strength {strength!r} is not shall, should or may")
    inferred = entry.get("inferred", False)
    if not isinstance(inferred, bool):
        raise HarnessError(f"{where}: inferred must be true or false")
    return CheckMetadata(module, tuple(reqs), clause, Strength(strength), inferred)


METADATA = load_metadata(CHECKS_TABLE.read_text(encoding="utf-8"))


def check(name: str) -> Callable[[CheckFunction], CheckFunction]:
    """Register a check under a stable name (used by the case catalogue), with the REQ ids,
    clause and strength checks.toml gives that name under the table of its module."""

    def register(function: CheckFunction) -> CheckFunction:
        if name in REGISTRY:
            raise HarnessError(f"check {name!r} registered twice")
        meta = METADATA.get(name)
        if meta is None:
            raise HarnessError(f"check {name!r} has no line in {CHECKS_TABLE.name}")
        module = function.__module__.rpartition(".")[2]
        if meta.module != module:
            raise HarnessError(
                f"check {name!r} is defined in {module}.py but listed under "
                f"[{meta.module}] in {CHECKS_TABLE.name}"
            )
        summary = (function.__doc__ or name).strip().splitlines()[0]
        REGISTRY[name] = CheckSpec(
            name, meta.reqs, meta.clause, meta.strength, meta.inferred, summary, function
        )
        return function

    return register


def require_every_check_defined() -> None:
    """Fail when checks.toml lists a check no module defined (called once every check
    module of the package is imported)."""
    undefined = sorted(set(METADATA) - set(REGISTRY))
    if undefined:
        raise HarnessError(
            f"{CHECKS_TABLE.name} lists checks that no module defines: {', '.join(undefined)}"
        )


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
    content = _content(ctx.response)
    return content if isinstance(content, kind) else None


def content_name(ctx: CheckContext) -> str:
    """What ``KmsMessage`` holds, for a violation's observed value."""
    message = ctx.response.kms_message if ctx.response else None
    if message is None:
        return "no KmsMessage"
    return ", ".join(c.local for c in message.children) or "empty KmsMessage"


def case_responses(ctx: CheckContext) -> list[KmsResponse]:
    """The plaintext KmsResponse of each step of the case so far, oldest first, this one last."""
    earlier = [getattr(item, "response", None) for item in ctx.history]
    return [r for r in [*earlier, ctx.response] if isinstance(r, KmsResponse)]


def key_sets(response: KmsResponse | None) -> list[KmsKeySet]:
    """The key sets of a response's KmsKeyProv (none for any other message)."""
    content = _content(response)
    return list(content.key_sets) if isinstance(content, KmsKeyProv) else []


def root_certificate(response: KmsResponse | None) -> KmsCertificate | None:
    """The certificate of a response's KmsInit: the KMS's own (Root) certificate."""
    content = _content(response)
    if isinstance(content, KmsInit) and content.certificates:
        return content.certificates[0]
    return None


def key_octets(key_set: KmsKeySet, name: str) -> bytes | None:
    """Key ``name`` of a key set as octets: unwrapped, else its hexBinary text; None when the
    key set has no such key or its text is not hexBinary."""
    content = key_set.keys.get(name)
    if content is None:
        return None
    return content.plaintext if content.plaintext is not None else hex_octets(content.text)


def user_id_octets(key_set: KmsKeySet) -> bytes | None:
    """A key set's UserID decoded (64 hex digits or base64 of 32 octets); None when it is
    missing or neither."""
    text = key_set.get("UserID")
    if text is None:
        return None
    try:
        return uid.decode_user_id(text)
    except CryptoError:
        return None


def version_problem(node: Node, wanted: str) -> str | None:
    """Why an item's @Version is not ``wanted`` (absent means the schema's fixed value)."""
    value = node.attr("Version")
    return None if value in (None, wanted) else f"Version {value}, expected {wanted}"


def judge(problem: str | None, expected: str, passed: str) -> Finding:
    """The violation ``problem`` (which is also what was observed) of ``expected``, or ok
    with the message ``passed`` when there is no problem."""
    if problem is not None:
        return violation(problem, expected, problem)
    return ok(passed)


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


def _content(response: KmsResponse | None) -> object:
    message = response.kms_message if response is not None else None
    return message.content if message is not None else None


def shorten(value: str | None, limit: int = 80) -> str:
    """A value as a report shows it: absent is spelt out, long values are cut."""
    if value is None:
        return "(absent)"
    return value if len(value) <= limit else f"{value[: limit - 12]}...({len(value)} chars)"
