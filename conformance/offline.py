"""``kms-conformance check``: every check that needs no live KMS, on a captured response.

Exit 0 when no applicable check is violated, 1 when one is, 2 when the input files or the
target file cannot be used (DESIGN.md section 5).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from lxml import etree

from conformance.checks import REGISTRY, CheckContext, HarnessError, run_check
from conformance.checks.values import parse_datetime
from conformance.model import (
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
from conformance.protection import unprotect
from conformance.redacted_input import skip_redacted
from conformance.target import Target, TargetFileError, User, load_target
from conformance.verdicts import CheckResult, Outcome
from conformance.xmlsafe import XmlRejected, parse_xml

REQUEST_TYPES = ("init", "keyprov", "certcache", "cert", "lookup")
_CHECKS_BY_TYPE = {
    "init": ("envelope.", "init.", "certificate.", "security."),
    "keyprov": ("envelope.", "keyprov.", "keyset.", "security."),
    "certcache": ("envelope.", "certcache.", "certificate.", "security."),
    "cert": ("envelope.", "certcache.", "certificate.", "security."),
    "lookup": ("envelope.", "security."),
}
_NOT_OFFLINE = ("error.", "cert.requested")


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


def check_file(
    file: Path,
    *,
    init_file: Path | None = None,
    request_type: str | None = None,
    target_file: Path | None = None,
) -> OfflineResult:
    """Run the offline checks on ``file``; raise ``UsageError`` for unusable inputs."""
    target = _load_target(target_file)
    profile = _profile(target)
    notes: list[str] = []
    raw_root = _read(file)
    try:
        raw = parse_response(raw_root, profile.namespace)
    except NotAKmsResponse as exc:
        failed = CheckResult("envelope.root", Outcome.VIOLATION, str(exc), ("REQ-050",), "D.3.1")
        return OfflineResult(str(file), request_type or "unknown", [failed], notes)
    user = target.user if target else None
    response, protection = unprotect(raw, user, profile)
    notes.extend(protection.notes)
    kind = request_type or _infer_request_type(response)
    if kind not in REQUEST_TYPES:
        raise UsageError(f"--request-type {kind!r} is not one of {', '.join(REQUEST_TYPES)}")
    init_cert = _init_certificate(init_file, profile, response, user)
    if init_cert is None:
        notes.append("no init response given (--init): key checks against it are skipped")
    context = CheckContext(
        profile=profile,
        request_type=kind,
        response=response,
        raw=raw,
        init_certificate=init_cert,
        user=user,
        target=target,
        protection=protection,
        expected_user_uri=user.uri if user else None,
        request_instant=parse_datetime(raw.get("Time")),
        params={"offline": True},
    )
    names = [
        n
        for n in REGISTRY
        if n.startswith(_CHECKS_BY_TYPE[kind]) and not n.startswith(_NOT_OFFLINE)
    ]
    results = [run_check(n, context) for n in names]
    # An evidence body of a run: its private key material is redacted, not malformed.
    namespace = raw.namespace if profile.namespace_configurable else None
    results = skip_redacted(results, raw_root, profile, namespace)
    return OfflineResult(str(file), kind, results, notes)


def main(
    file: str,
    init: str | None,
    request_type: str | None,
    target: str | None,
    out: TextIO = sys.stdout,
) -> int:
    try:
        result = check_file(
            Path(file),
            init_file=Path(init) if init else None,
            request_type=request_type,
            target_file=Path(target) if target else None,
        )
    except (UsageError, TargetFileError, ProfileError) as exc:
        print(f"kms-conformance check: {exc}", file=sys.stderr)
        return 2
    except HarnessError as exc:
        print(f"kms-conformance check: harness error: {exc}", file=sys.stderr)
        return 2
    _print(result, out)
    return 0 if result.conformant else 1


# -- helpers ----------------------------------------------------------------------------


def _load_target(target_file: Path | None) -> Target | None:
    return load_target(target_file) if target_file else None


def _profile(target: Target | None) -> Profile:
    return get_profile(target.profile.release if target else None)


def _read(file: Path) -> etree._Element:
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise UsageError(f"{file}: cannot read ({exc.strerror})") from None
    try:
        return parse_xml(data)
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
    raise UsageError("cannot tell the request type from the content; give --request-type")


def _init_certificate(
    init_file: Path | None, profile: Profile, response: KmsResponse, user: User | None
) -> KmsCertificate | None:
    source = response
    if init_file is not None:
        try:
            source = parse_response(_read(init_file), profile.namespace)
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
