"""``kms-conformance check``: every check that needs no live KMS, on a captured response.

Exit 0 when no applicable check is violated, 1 when one is, 2 when the input files or the
target file cannot be used (DESIGN.md section 5).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from lxml import etree

from conformance.checks import REGISTRY, CheckContext, HarnessError, run_check
from conformance.checks.values import parse_datetime
from conformance.core.exchange import Exchange, RecordedRequest
from conformance.core.limits import DEFAULT_LIMITS, CpuBudgetExceeded, Limits, cpu_budget
from conformance.core.xmlsafe import StructureRejected, XmlRejected, parse_xml
from conformance.model.messages import (
    KmsCertCache,
    KmsCertificate,
    KmsInit,
    KmsKeyProv,
    KmsLookup,
    KmsResponse,
    NotAKmsResponse,
    parse_response,
)
from conformance.profiles import Profile, ProfileError, get_profile
from conformance.protection.response import unprotect
from conformance.run.capture import (
    Capture,
    CaptureError,
    RequestFacts,
    read_captures,
    request_facts,
)
from conformance.run.redacted_input import skip_redacted
from conformance.target.file import Target, TargetFileError, User, load_target
from conformance.verdicts.outcomes import CheckResult, Outcome

REQUEST_TYPES = ("init", "keyprov", "certcache", "cert", "lookup")
_CHECKS_BY_TYPE = {
    "init": ("envelope.", "init.", "certificate.", "security."),
    "keyprov": ("envelope.", "keyprov.", "keyset.", "security."),
    "certcache": ("envelope.", "certcache.", "certificate.", "security."),
    "cert": ("envelope.", "certcache.", "certificate.", "security."),
    "lookup": ("envelope.", "security."),
}
_NOT_OFFLINE = ("error.", "cert.requested")
# An error answer (a KmsResponse carrying KmsError, or any 4xx/5xx) of any request type is
# judged by the envelope and KmsError rules only: it owes no message and no key material.
# The checks of one negative scenario (invalid_token, insufficient_scope, robustness) judge
# why the request was refused and need the live case that sent it, so they are not here.
ERROR_CHECKS = (
    "envelope.schema",
    "envelope.version",
    "envelope.user-uri",
    "envelope.kms-uri",
    "envelope.time",
    "envelope.kms-id",
    "envelope.client-req-url",
    "envelope.no-error",
    "error.kms-error",
    "error.field-order",
    "error.no-key-material",
    "error.code-matches-status",
    "error.www-authenticate",
)
ERROR_ANSWER = "error answer"
# What conformance/report/redact.py writes in place of a secret in evidence files.
REDACTION_MARKER = re.compile(rb"<redacted [A-Za-z0-9_.-]+ sha256:[0-9a-f]{8}>")


class UsageError(ValueError):
    """A problem with what the user gave (exit 2); the message is one line."""


@dataclass
class OfflineResult:
    file: str
    request_type: str
    results: list[CheckResult]
    notes: list[str]

    @property
    def conformant(self) -> bool:
        return not any(r.outcome is Outcome.VIOLATION for r in self.results)


@dataclass(frozen=True)
class Given:
    """What the user gave besides the capture (flags win over what a capture records)."""

    init_file: Path | None = None
    request_type: str | None = None
    status: int | None = None
    url: str | None = None
    kms_uri: str | None = None


def check_file(
    file: Path,
    *,
    init_file: Path | None = None,
    request_type: str | None = None,
    target_file: Path | None = None,
    status: int | None = None,
    url: str | None = None,
    kms_uri: str | None = None,
) -> OfflineResult:
    """Run the offline checks on one response file; raise ``UsageError`` for unusable inputs."""
    given = Given(init_file, request_type, status, url, kms_uri)
    target = _load_target(target_file)
    try:
        capture = Capture(str(file), file.read_bytes())
    except OSError as exc:
        raise UsageError(f"{file}: cannot read ({exc.strerror})") from None
    return check_capture(capture, given, target)


def check_path(path: Path, given: Given, target_file: Path | None = None) -> list[OfflineResult]:
    """Every capture in ``path`` (file, evidence/request-response folder, HAR file)."""
    target = _load_target(target_file)
    try:
        captures = read_captures(path)
    except CaptureError as exc:
        raise UsageError(str(exc)) from None
    if len(captures) == 1:
        return [check_capture(captures[0], given, target)]
    # One unusable capture among many (a redacted key set, a body-less answer) is reported
    # and the others are still checked.
    results = []
    for capture in captures:
        try:
            results.append(check_capture(capture, given, target))
        except UsageError as exc:
            results.append(OfflineResult(capture.name, "not checked", [], [str(exc)]))
    if all(r.request_type == "not checked" for r in results):
        raise UsageError(f"{path}: no capture could be checked: {results[0].notes[0]}")
    return results


def check_capture(capture: Capture, given: Given, target: Target | None) -> OfflineResult:
    """One capture within the answer budgets of ``[limits]`` (structure first, then CPU)."""
    limits = target.limits if target else DEFAULT_LIMITS
    shown = given.request_type or "unknown"
    try:
        with cpu_budget(limits.case_cpu_s):
            return _check_capture(capture, given, target, limits)
    except StructureRejected as exc:
        # Over a [limits] key: the answer is not one a KMS may send, and nothing else runs.
        failed = _limit_check("limits.structure", f"response {exc}")
        return OfflineResult(capture.name, shown, [failed], [])
    except CpuBudgetExceeded as exc:
        failed = _limit_check("limits.case_cpu", f"answer {exc}")
        return OfflineResult(capture.name, shown, [failed], [])


def _limit_check(name: str, message: str) -> CheckResult:
    return CheckResult(name, Outcome.VIOLATION, message, (), "DESIGN.md 8")


def _check_capture(
    capture: Capture, given: Given, target: Target | None, limits: Limits
) -> OfflineResult:
    profile = _profile(target)
    notes: list[str] = []
    status = given.status if given.status is not None else capture.status
    url = given.url or capture.url
    try:
        if given.url:
            facts = request_facts(given.url)
        elif capture.url:
            facts = request_facts(capture.url, f"{capture.name}: request URL", strict=False)
        else:
            facts = RequestFacts()
    except CaptureError as exc:
        raise UsageError(str(exc)) from None
    if not capture.body.strip():
        raise UsageError(
            f"{capture.name}: the response has no body"
            + (f" (HTTP {status})" if status is not None else "")
            + ": nothing to check offline"
        )
    if REDACTION_MARKER.search(capture.body):
        raise UsageError(
            f"{capture.name}: the body holds redaction markers (<redacted ...>) in place of "
            "secrets, as evidence files do; check the unredacted capture"
        )
    try:
        raw_root = parse_xml(capture.body, limits=limits)
    except StructureRejected:
        raise
    except XmlRejected as exc:
        raise UsageError(f"{capture.name}: {exc}") from None
    try:
        raw = parse_response(raw_root, profile.namespace)
    except NotAKmsResponse as exc:
        failed = CheckResult("envelope.root", Outcome.VIOLATION, str(exc), ("REQ-050",), "D.3.1")
        shown = given.request_type or facts.request_type or "unknown"
        return OfflineResult(capture.name, shown, [failed], notes)
    user = target.user if target else None
    response, protection = unprotect(raw, user, profile)
    notes.extend(protection.notes)
    is_error = raw.kms_error is not None or (status is not None and status >= 400)
    named = given.request_type or facts.request_type
    if named is not None:
        kind = named
    else:
        kind = ERROR_ANSWER if is_error else _infer_request_type(response)
    if kind not in REQUEST_TYPES and kind != ERROR_ANSWER:
        raise UsageError(f"--request-type {kind!r} is not one of {', '.join(REQUEST_TYPES)}")
    init_cert = _init_certificate(given.init_file, profile, response, limits, user)
    if init_cert is None and not is_error:
        notes.append("no init response given (--init): key checks against it are skipped")
    params: dict[str, object] = {"offline": True}
    if facts.path is not None:
        params["request_path"] = facts.path
    if given.kms_uri:
        params["kms_uri"] = given.kms_uri
    expected_user = user.uri if user else None
    if kind == "keyprov" and facts.requested_uri is not None:
        expected_user = facts.requested_uri
        params["requested_uri"] = facts.requested_uri
    elif kind == "cert" and facts.requested_uri is not None:
        params["requested_kms_uri"] = facts.requested_uri
    elif kind == "lookup" and facts.requested_uri is not None:
        params["requested_sip_uri"] = facts.requested_uri
    if is_error:
        # Which identity an error names is not fixed (the requester's or the requested):
        # UserUri is judged for presence only.
        expected_user = None
    context = CheckContext(
        profile=profile,
        request_type=kind if kind in REQUEST_TYPES else None,
        response=response,
        raw=raw,
        init_certificate=init_cert,
        user=user,
        target=target,
        protection=protection,
        expected_user_uri=expected_user,
        request_instant=parse_datetime(raw.get("Time")),
        requested_ntp=facts.requested_ntp,
        params=params,
        exchange=_exchange(capture, status, url, facts) if status is not None else None,
    )
    if is_error:
        names = list(ERROR_CHECKS)
        if status is None:
            notes.append("no HTTP status given (--status): ErrorCode not compared with it")
    else:
        names = [
            n
            for n in REGISTRY
            if n.startswith(_CHECKS_BY_TYPE[kind])
            and (not n.startswith(_NOT_OFFLINE) or _can_judge_requested(n, params))
        ]
    label = kind if not is_error or kind == ERROR_ANSWER else f"{kind}, error answer"
    described = facts.describe()
    label += f", {described}" if described else ""
    label += f", HTTP {status}" if status is not None else ""
    results = [run_check(n, context) for n in names]
    # An evidence body of a run: its private key material is redacted, not malformed.
    namespace = raw.namespace if profile.namespace_configurable else None
    results = skip_redacted(results, raw_root, profile, namespace)
    return OfflineResult(capture.name, label, results, notes)


def main(
    file: str,
    init: str | None,
    request_type: str | None,
    target: str | None,
    out: TextIO = sys.stdout,
    *,
    status: int | None = None,
    url: str | None = None,
    kms_uri: str | None = None,
) -> int:
    given = Given(Path(init) if init else None, request_type, status, url, kms_uri)
    try:
        results = check_path(Path(file), given, Path(target) if target else None)
    except (UsageError, TargetFileError, ProfileError) as exc:
        print(f"kms-conformance check: {exc}", file=sys.stderr)
        return 2
    except HarnessError as exc:
        print(f"kms-conformance check: harness error: {exc}", file=sys.stderr)
        return 2
    for result in results:
        _print(result, out)
    return 0 if all(r.conformant for r in results) else 1


def _can_judge_requested(name: str, params: dict[str, object]) -> bool:
    """``cert.requested`` can be judged offline once the URL named the requested KMS."""
    return name == "cert.requested" and "requested_kms_uri" in params


def _exchange(capture: Capture, status: int, url: str | None, facts: RequestFacts) -> Exchange:
    """The captured exchange as the checks that read HTTP facts expect it."""
    request = RecordedRequest(
        method=capture.method or "POST", url=url or "", path=facts.path or "", headers=(), body=b""
    )
    return Exchange(
        label="capture", request=request, status=status, headers=capture.headers, body=capture.body
    )


# -- helpers ----------------------------------------------------------------------------


def _load_target(target_file: Path | None) -> Target | None:
    return load_target(target_file) if target_file else None


def _profile(target: Target | None) -> Profile:
    return get_profile(target.profile.release if target else None)


def _read(file: Path, limits: Limits = DEFAULT_LIMITS) -> etree._Element:
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise UsageError(f"{file}: cannot read ({exc.strerror})") from None
    try:
        return parse_xml(data, limits=limits)
    except XmlRejected as exc:
        raise UsageError(f"{file}: {exc}") from None


def _infer_request_type(response: KmsResponse) -> str:
    content = response.kms_message.content if response.kms_message else None
    for kind, name in (
        (KmsInit, "init"),
        (KmsKeyProv, "keyprov"),
        (KmsCertCache, "certcache"),
        (KmsLookup, "lookup"),
    ):
        if isinstance(content, kind):
            return name
    raise UsageError("cannot tell the request type from the content; give --request-type or --url")


def _init_certificate(
    init_file: Path | None,
    profile: Profile,
    response: KmsResponse,
    limits: Limits,
    user: User | None,
) -> KmsCertificate | None:
    source = response
    if init_file is not None:
        try:
            source = parse_response(_read(init_file, limits), profile.namespace)
        except NotAKmsResponse as exc:
            raise UsageError(f"{init_file}: {exc}") from None
        # An encrypted init response opens with the user's TrK, as the response does.
        source, _facts = unprotect(source, user, profile)
    content = source.kms_message.content if source.kms_message else None
    if isinstance(content, KmsInit) and content.certificates:
        return content.certificates[0]
    if init_file is not None:
        raise UsageError(f"{init_file}: holds no KmsInit certificate")
    return None


_MARK = {
    Outcome.OK: "ok  ",
    Outcome.VIOLATION: "FAIL",
    Outcome.WARNING: "warn",
    Outcome.SKIPPED: "skip",
}


def _print(result: OfflineResult, out: TextIO) -> None:
    print(f"{result.file} ({result.request_type})", file=out)
    if result.request_type == "not checked":
        print(f"  not checked: {result.notes[0]}", file=out)
        return
    for r in result.results:
        reqs = ",".join(r.reqs)
        print(f"  {_MARK[r.outcome]} {r.name:30} {r.message}  [{reqs}]", file=out)
    for note in result.notes:
        print(f"  note: {note}", file=out)
    counts = {o: sum(1 for r in result.results if r.outcome is o) for o in Outcome}
    verdict = "conformant" if result.conformant else "NOT conformant"
    print(
        f"{verdict}: {counts[Outcome.OK]} ok, {counts[Outcome.VIOLATION]} violated, "
        f"{counts[Outcome.WARNING]} warnings, {counts[Outcome.SKIPPED]} skipped",
        file=out,
    )
