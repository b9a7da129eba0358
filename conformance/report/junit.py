"""junit.xml for CI systems (GitLab, Jenkins, GitHub test reporters).

One ``<testsuite>`` per area and one ``<testcase>`` per case, named ``<CASE-ID> <title>``
with classname ``kms-conformance.<area>``. Verdicts map onto the elements every JUnit
consumer knows: ``fail`` -> ``<failure>`` (one-line reason as message, expected vs observed
of each failing check in the body), ``error`` -> ``<error>``, ``n/a`` -> ``<skipped>``,
``inconc`` -> ``<skipped type="inconc">`` plus the property ``verdict=inconc``.

Each testcase carries ``<properties>`` (case_id, reqs, clause, verdict), as pytest's
xunit1 output and the Jenkins JUnit plugin do; the strict Jenkins xUnit ``junit-10.xsd``
does not list properties inside a testcase, so the same facts are repeated in
``<system-out>`` for consumers that only show that.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from lxml import etree

from conformance.report.redact import Redactor
from conformance.verdicts.outcomes import Outcome, Verdict
from conformance.verdicts.results import CaseResult, RunResult

SUITE_PREFIX = "kms-conformance"
# XML 1.0 cannot carry these code points at all, not even escaped.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def render(run: RunResult, redactor: Redactor, evidence_dirs: Mapping[str, str]) -> bytes:
    """The junit.xml document for ``run``."""
    areas: dict[str, list[CaseResult]] = {}
    for case in run.cases:
        areas.setdefault(case.area or "general", []).append(case)
    timestamp = run.started.isoformat(timespec="seconds")
    root = etree.Element("testsuites", name=SUITE_PREFIX)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    for area, cases in areas.items():
        counts = _counts(cases)
        for key, value in counts.items():
            totals[key] += value
        suite_time = sum(case.duration_s for case in cases)
        total_time += suite_time
        suite = etree.SubElement(
            root,
            "testsuite",
            name=_clean(redactor, f"{SUITE_PREFIX}.{area}"),
            tests=str(counts["tests"]),
            failures=str(counts["failures"]),
            errors=str(counts["errors"]),
            skipped=str(counts["skipped"]),
            time=f"{suite_time:.3f}",
            timestamp=timestamp,
        )
        for case in cases:
            _testcase(suite, case, area, redactor, evidence_dirs.get(case.id, case.id))
    for key, value in totals.items():
        if key != "skipped":  # testsuites has no skipped attribute in junit-10.xsd
            root.set(key, str(value))
    root.set("time", f"{total_time:.3f}")
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def _testcase(
    suite: etree._Element, case: CaseResult, area: str, redactor: Redactor, evidence_dir: str
) -> None:
    def clean(text: str) -> str:
        return _clean(redactor, text)

    element = etree.SubElement(
        suite,
        "testcase",
        classname=clean(f"{SUITE_PREFIX}.{area}"),
        name=clean(f"{case.id} {case.title}".strip()),
        time=f"{case.duration_s:.3f}",
    )
    properties = etree.SubElement(element, "properties")
    facts = {
        "case_id": case.id,
        "reqs": " ".join(case.reqs),
        "clause": " ".join(case.clauses),
        "verdict": case.verdict.value,
        "evidence": f"evidence/{evidence_dir}/",
    }
    if case.waiver:  # run --waivers: the waiver that decided the case and what it did
        w = case.waiver
        facts["waiver"] = f"{w['status']}: {w['case']}: {w['reason']}" + "".join(
            f"; {k} {w[k]}" for k in ("tracking", "expires", "condition") if w.get(k)
        )
    for name, value in facts.items():
        etree.SubElement(properties, "property", name=name, value=clean(value))
    reason = _one_line(clean(case.reason)) or case.verdict.value
    waiver = case.waiver or {}
    status = waiver.get("status", "")
    if case.waived:  # a known deviation: shown, but it does not fail a CI gate
        skipped = etree.SubElement(element, "skipped", message=f"fail (waived): {reason}")
        skipped.set("type", "waived")
        skipped.text = clean(_failing_checks_text(case))
    elif status == "unexpected pass":  # the run fails: the waiver is stale
        message = clean(f"unexpected pass: waived ({waiver.get('reason', '')}) but passed")
        etree.SubElement(element, "failure", message=message, type="unexpected-pass")
    elif case.verdict is Verdict.FAIL:
        failure = etree.SubElement(element, "failure", message=reason, type="fail")
        failure.text = clean(_failing_checks_text(case))
    elif case.verdict is Verdict.ERROR:
        error = etree.SubElement(element, "error", message=reason, type="error")
        error.text = clean(_failing_checks_text(case) or case.reason)
    elif case.verdict is Verdict.NA:
        etree.SubElement(element, "skipped", message=reason)
    elif case.verdict is Verdict.INCONC:
        etree.SubElement(element, "skipped", message=f"inconclusive: {reason}", type="inconc")
    out = etree.SubElement(element, "system-out")
    out.text = "\n".join(f"{name}: {clean(value)}" for name, value in facts.items()) + "\n"


def _failing_checks_text(case: CaseResult) -> str:
    blocks = []
    for check in case.checks:
        if check.outcome is not Outcome.VIOLATION and check.outcome is not Outcome.WARNING:
            continue
        if case.verdict is Verdict.FAIL and check.outcome is Outcome.WARNING:
            continue
        reqs = ", ".join(check.reqs)
        head = f"[{check.outcome.value}] {check.name}"
        if reqs or check.clause:
            head += f" ({', '.join(x for x in (reqs, check.clause) if x)})"
        blocks.append(
            f"{head}\n  {check.message}\n  expected: {check.expected}\n  observed: {check.observed}"
        )
    return "\n\n".join(blocks)


def _counts(cases: list[CaseResult]) -> dict[str, int]:
    verdicts = [case.verdict for case in cases]
    waived = sum(1 for case in cases if case.waived)
    unexpected = sum(1 for c in cases if c.waiver and c.waiver["status"] == "unexpected pass")
    return {
        "tests": len(cases),
        "failures": verdicts.count(Verdict.FAIL) - waived + unexpected,
        "errors": verdicts.count(Verdict.ERROR),
        "skipped": verdicts.count(Verdict.NA) + verdicts.count(Verdict.INCONC) + waived,
    }


def _clean(redactor: Redactor, text: str) -> str:
    return _NOT_XML.sub("\ufffd", redactor.text(text))


def _one_line(text: str) -> str:
    return " ".join(text.split())
