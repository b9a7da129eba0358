"""Allure metadata and attachments for one case, set from inside its running pytest item.

The pytest plugin calls ``decorate`` in the test item of a case after the case ran; with
``--alluredir`` allure-pytest then writes the result with these labels and attachments.
History across runs follows the item's node id (allure-pytest derives ``historyId`` and
``testCaseId`` from it), which the plugin builds from the case id; the ``as_id`` label and
the ``case_id`` tag carry the case id as well.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import allure
from allure_commons.types import AttachmentType, LinkType

from conformance.report.evidence import (
    EXCERPT_BYTES,
    excerpt_note,
    redacted_prefix,
    request_text,
    response_text,
    step_dir,
)
from conformance.report.redact import Redactor, key_material
from conformance.report.results_json import case_reqs
from conformance.verdicts.results import CaseResult, StepRecord

SEVERITY = {"shall": "critical", "should": "normal", "may": "minor"}
SPEC_PAGE = "https://www.3gpp.org/DynaReport/33180.htm"
# allure-python has no type hints; one Any-typed handle keeps mypy --strict quiet.
_dynamic: Any = allure.dynamic
_RFC = re.compile(r"RFC\s*(\d{3,5})", re.IGNORECASE)


def decorate(case: CaseResult, redactor: Redactor) -> None:
    """Set title, description, labels and links of the running Allure test, and attach
    each exchange redacted."""
    found = [
        secret
        for step in case.steps
        if not step.redacted  # redacted at capture (report.redact.Capture)
        for body in step.all_bodies()
        for secret in key_material(body)
    ]
    red = redactor.extended(found) if found else redactor
    _dynamic.title(red.text(f"{case.id} {case.title}".strip()))
    _dynamic.description(red.text(_description(case)))
    _dynamic.id(red.text(case.id))
    _dynamic.label("case_id", red.text(case.id))
    _dynamic.epic(red.text(case.area or "general"))
    for request_type in case.request_types:
        _dynamic.feature(red.text(request_type))
    for req in case_reqs(case):
        _dynamic.story(red.text(req))
    _dynamic.severity(SEVERITY.get(case.strength.lower(), "normal"))
    _dynamic.tag(red.text(case.area or "general"), f"verdict:{case.verdict.value}")
    for clause in case.clauses:
        _dynamic.link(_clause_url(clause), link_type=LinkType.LINK, name=red.text(clause))
    for index, step in enumerate(case.steps, start=1):
        _attach_step(step_dir(index, step), step, red)


def _attach_step(name: str, step: StepRecord, red: Redactor) -> None:
    """The exchange as text, bodies cut at ``EXCERPT_BYTES`` with a line naming the whole
    body's size, digest and evidence file: Allure never holds a second copy of a run's
    bodies (the excerpts are what the case kept in memory once its evidence was written)."""
    exchange = step.exchange
    request = dataclasses.replace(
        exchange.request, body=redacted_prefix(red, exchange.request.body, EXCERPT_BYTES)
    )
    cut = dataclasses.replace(exchange, request=request)
    cut.body = redacted_prefix(red, exchange.body, EXCERPT_BYTES)
    allure.attach(
        request_text(request, cut, red) + _note(step, "request"),
        name=f"{name} request",
        attachment_type=AttachmentType.TEXT,
    )
    allure.attach(
        response_text(cut, red) + _note(step, "response"),
        name=f"{name} response",
        attachment_type=AttachmentType.TEXT,
    )
    if step.plaintext is not None:
        allure.attach(
            redacted_prefix(red, step.plaintext, EXCERPT_BYTES)
            + _note(step, "plaintext", xml=True),
            name=f"{name} decrypted KmsMessage",
            attachment_type=AttachmentType.XML,
        )


def _note(step: StepRecord, kind: str, *, xml: bool = False) -> bytes:
    note = excerpt_note(step, kind)
    if note is None:
        return b""
    return (f"\n<!-- {note} -->\n" if xml else f"\n{note}\n").encode("utf-8")


def _description(case: CaseResult) -> str:
    lines = [
        f"Verdict: {case.verdict.value}: {case.reason}",
        f"Requirements: {', '.join(case.reqs)}; clause {', '.join(case.clauses)}",
    ]
    if case.description:
        lines += ["", case.description]
    failing = [c for c in case.checks if c.outcome.value in ("violation", "warning")]
    for check in failing:
        lines += [
            "",
            f"[{check.outcome.value}] {check.name}: {check.message}",
            f"expected: {check.expected}",
            f"observed: {check.observed}",
        ]
    return "\n".join(lines)


def _clause_url(clause: str) -> str:
    """Where a clause can be read: the RFC it names, else TS 33.180's page."""
    rfc = _RFC.search(clause)
    if rfc:
        return f"https://www.rfc-editor.org/rfc/rfc{rfc.group(1)}"
    return SPEC_PAGE
