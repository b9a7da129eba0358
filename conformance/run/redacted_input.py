"""``kms-conformance check`` on an evidence body whose key material was redacted.

A run's evidence replaces the text of the private key elements (RSK, SSK, new TrK/InK, and
everything inside them, such as the CipherValue of a wrapped key) by a redaction marker
(``conformance.report.redact``). Re-reading such a body, the checks that judge that key
material would fail on the marker, not on anything the KMS sent: they are skipped here
with the reason instead, and schema errors located in a redacted element are dropped. All
other checks run as on any captured response.
"""

from __future__ import annotations

from dataclasses import replace

from lxml import etree

from conformance.checks.envelope import profile_schema_errors
from conformance.profiles import Profile
from conformance.report.redact import is_marker
from conformance.verdicts.outcomes import CheckResult, Outcome

# The private key elements a run redacts, and the checks that read their content.
_DEPENDENT_CHECKS = {
    "UserDecryptKey": ("keyset.rsk-format", "keyset.sakke", "security.key-wrap"),
    "UserSigningKeySSK": ("keyset.ssk-pvt-format", "keyset.eccsi", "security.key-wrap"),
    "NewTransportKey": ("security.new-keys", "security.key-wrap"),
    "NewIntegrityKey": ("security.new-keys", "security.key-wrap"),
}
# A signature covers the whole KmsResponse: over redacted content it cannot verify.
_SIGNATURE_CHECKS = ("security.sig-verifies", "security.sig-ink-over-trk", "security.claims-verify")
_SCHEMA = "envelope.schema"


def redacted_elements(document: etree._Element) -> dict[str, str]:
    """Local name of each private key element holding a redaction marker -> the marker."""
    found: dict[str, str] = {}
    for element in document.iter():
        if not isinstance(element.tag, str):
            continue
        name = etree.QName(element).localname
        if name not in _DEPENDENT_CHECKS or name in found:
            continue
        for text in element.itertext():
            stripped = str(text).strip()
            if is_marker(stripped):
                found[name] = stripped
                break
    return found


def skip_redacted(
    results: list[CheckResult],
    document: etree._Element,
    profile: Profile,
    namespace: str | None,
) -> list[CheckResult]:
    """``results`` with the checks of redacted key material skipped, with the reason."""
    redacted = redacted_elements(document)
    if not redacted:
        return results
    reasons: dict[str, str] = {}
    for name, mark in redacted.items():
        for check_name in _DEPENDENT_CHECKS[name]:
            reasons.setdefault(
                check_name,
                f"{name} is redacted in this file ({mark}): its key material is not checked",
            )
        for check_name in _SIGNATURE_CHECKS:
            reasons.setdefault(
                check_name,
                f"{name} is redacted in this file ({mark}): a signature over it cannot verify",
            )
    adjusted = []
    for found in results:
        if found.outcome in (Outcome.VIOLATION, Outcome.WARNING) and found.name in reasons:
            found = replace(found, outcome=Outcome.SKIPPED, message=reasons[found.name])  # noqa: PLW2901
        elif found.name == _SCHEMA and found.outcome is Outcome.VIOLATION:
            found = _schema_without_redacted(found, document, profile, namespace, redacted)  # noqa: PLW2901
        adjusted.append(found)
    return adjusted


def _schema_without_redacted(
    result: CheckResult,
    document: etree._Element,
    profile: Profile,
    namespace: str | None,
    redacted: dict[str, str],
) -> CheckResult:
    errors = list(profile_schema_errors(profile, namespace, document))
    kept = [(path, reason) for path, reason in errors if not _inside(path, redacted)]
    if len(kept) == len(errors):
        return result
    names = ", ".join(sorted(redacted))
    if not kept:
        return replace(
            result,
            outcome=Outcome.OK,
            message=f"valid against the {profile.name} schema apart from the redacted {names}",
            observed="",
        )
    where, reason = kept[0]
    more = f" (+{len(kept) - 1} more)" if len(kept) > 1 else ""
    return replace(
        result,
        message=f"schema: {where}: {reason}{more} (redacted {names} not judged)",
        observed=f"{len(kept)} error(s)",
    )


def _inside(path: str, redacted: dict[str, str]) -> bool:
    """Whether a schema error path (``/a/b:c[2]/d``) runs through a redacted element."""
    for segment in path.split("/"):
        local = segment.split("[", 1)[0].rsplit(":", 1)[-1]
        if local in redacted:
            return True
    return False
