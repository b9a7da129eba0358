"""report.html: the single-file conformance report a test lab archives or prints.

One self-contained file: inline CSS, a few lines of inline JS (open every details block
before printing; filter the cases by verdict, area, requirement and text), no network
reference. Rendered by jinja2 with autoescaping on, from data
that has already been redacted, so neither a hostile KMS response nor a secret can reach
the page as markup.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from conformance.report.evidence import excerpt_note, step_dir
from conformance.report.redact import Redactor
from conformance.report.results_json import SECTIONS, redact_tree
from conformance.verdicts.results import RunResult, StepRecord

TEMPLATE = "report.html.j2"
# Bodies shown inline are cut here; the evidence files keep them whole.
BODY_EXCERPT_CHARS = 4000
ATTENTION = ("fail", "error", "inconc")
TESTED = ("pass", "fail", "inconc", "error")
FILTER_VERDICTS = ("pass", "fail", "waived", "unexpected", "inconc", "error", "n/a")


def render(run: RunResult, redactor: Redactor, document: Mapping[str, Any]) -> str:
    """The HTML report for ``run``; ``document`` is its (redacted) results.json document."""
    return templates().get_template(TEMPLATE).render(**view(run, redactor, document))


def templates() -> jinja2.Environment:
    """The report templates beside this module (report.html.j2, pctr.html.j2), escaped."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def verdict_banner(summary: Mapping[str, int]) -> tuple[str, str]:
    """(state, text) of the banner: any unwaived fail or unexpected pass -> not conformant;
    any inconc or error -> inconclusive; no case passed -> inconclusive; else conformant
    (naming the waived deviations, if any)."""
    waived = summary.get("waived", 0)
    if summary.get("fail", 0) - waived or summary.get("unexpected_pass", 0):
        return "not-conformant", "Not conformant"
    if summary.get("inconc", 0) or summary.get("error", 0):
        return "inconclusive", "Inconclusive"
    if not summary.get("pass", 0) and not waived:
        return "inconclusive", "Inconclusive: no applicable case ran"
    if waived:
        return "conformant", f"Conformant with {waived} waived deviation{'s' * (waived > 1)}"
    return "conformant", "Conformant"


def case_label(case: Mapping[str, Any]) -> str:
    """A case's verdict as reports print it: ``fail (waived)``, an unexpected pass, or plain."""
    status = (case.get("waiver") or {}).get("status")
    if status == "applied":
        return "fail (waived)"
    if status == "unexpected pass":
        return "pass (unexpected: waived)"
    return str(case["verdict"])


def _filter_words(case: Mapping[str, Any]) -> str:
    """The verdict words the filter matches: the verdict, and waived / unexpected."""
    status = (case.get("waiver") or {}).get("status")
    extra = {"applied": " waived", "unexpected pass": " unexpected"}.get(str(status), "")
    return str(case["verdict"]) + extra


def view(run: RunResult, redactor: Redactor, document: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the template shows, redacted."""
    summary = document["summary"]
    state, banner = verdict_banner(summary)
    cases = [dict(case) for case in document["cases"]]  # the document itself stays as is
    steps_by_case = {
        case.id: [_step_view(i, step, redactor) for i, step in enumerate(case.steps, 1)]
        for case in run.cases
    }
    for doc_case, case in zip(cases, run.cases, strict=True):
        doc_case["steps"] = steps_by_case[case.id]
        doc_case["controls"] = [_control_view(record, redactor) for record in case.controls]
        doc_case["anchor"] = "case-" + doc_case["evidence"].split("/")[1]
        doc_case["description"] = redactor.text(case.description)
        doc_case.setdefault("waiver", None)
        doc_case["label"] = case_label(doc_case)
        doc_case["filter_verdicts"] = _filter_words(doc_case)
        reqs = dict.fromkeys(doc_case["reqs"])
        for check in doc_case["checks"]:
            reqs.update(dict.fromkeys(check["reqs"]))
        doc_case["all_reqs"] = list(reqs)
        words = [doc_case["id"], doc_case["title"], doc_case["reason"], doc_case["label"]]
        words += [f"{ch['name']} {ch['message']}" for ch in doc_case["checks"]]
        doc_case["search"] = " ".join(words).lower()
    areas: dict[str, list[dict[str, Any]]] = {}
    for doc_case in cases:
        areas.setdefault(doc_case["area"] or "general", []).append(doc_case)
    rank = {verdict: i for i, verdict in enumerate(ATTENTION)}
    attention = sorted((c for c in cases if c["verdict"] in rank), key=lambda c: rank[c["verdict"]])
    attention += [c for c in cases if c["label"].startswith("pass (unexpected")]
    first = {c["id"] for c in attention}
    ordered = attention + [c for c in cases if c["id"] not in first]
    target = dict(document["target"])
    pics = target.pop("pics", None) or redact_tree(run.pics, redactor)
    warnings = [
        {"case": c, "check": check}
        for c in cases
        for check in c["checks"]
        if check["outcome"] == "warning"
    ]
    return {
        "title": f"KMS conformance report: {target.get('base_url', '')}".rstrip(": "),
        "state": state,
        "banner": banner,
        "summary": summary,
        "doc": document,
        "target": target,
        "pics": pics,
        "attention": attention,
        "areas": areas,
        "ordered": ordered,
        "warnings": warnings,
        "requirements": document["requirements"],
        "coverage": _coverage(document["requirements"]),
        "case_anchor": {c["id"]: c["anchor"] for c in cases},
        "waivers": document.get("waivers"),
        "waiver_file": run.waiver_file,
        "filter_verdicts": FILTER_VERDICTS,
        "evidence_cut": _evidence_cut(document),
    }


def _evidence_cut(document: Mapping[str, Any]) -> str:
    """The report's line saying where limits.max_evidence_bytes cut the evidence, or ""."""
    evidence = document.get("evidence") or {}
    if not evidence.get("truncated"):
        return ""
    cases = evidence.get("truncated_cases", [])
    limit = evidence.get("max_evidence_bytes")
    shown = ", ".join(cases[:10]) + (f" and {len(cases) - 10} more" if len(cases) > 10 else "")
    return (
        f"Evidence truncated: limits.max_evidence_bytes ({limit} octets) was reached; "
        f"the bodies of {len(cases)} case(s) are cut in evidence/: {shown}"
    )


def _control_view(record: Mapping[str, Any], redactor: Redactor) -> dict[str, Any]:
    """A control step (conformance/run/control.py): the command the target file gave, how it
    ended and its last line of output, redacted like everything else shown."""
    status = record.get("exit_status")
    return {
        "label": redactor.text(str(record.get("label") or "")),
        "action": redactor.text(str(record.get("action") or "")),
        "command": redactor.text(str(record.get("command") or "")),
        "ended": "not run" if status is None else f"exit {status}",
        "duration_ms": round(1000 * float(record.get("duration_s") or 0.0)),
        "output": redactor.text(str(record.get("output") or "")),
        "problem": redactor.text(str(record.get("problem") or "")),
        "cleanup": bool(record.get("cleanup")),
    }


def _step_view(index: int, step: StepRecord, redactor: Redactor) -> dict[str, Any]:
    exchange = step.exchange
    request = exchange.request
    directory = step_dir(index, step)
    files = ["request.txt", "response.txt", "response.body"]
    if step.plaintext is not None:
        files.append("plaintext.xml")
    status = (
        f"{exchange.status} {exchange.reason}".strip()
        if exchange.status is not None
        else f"no response: {exchange.error_kind or 'error'}: {exchange.error or ''}"
    )
    return {
        "dir": directory,
        "label": redactor.text(step.label),
        "request_line": redactor.text(f"{request.method} {request.url}"),
        "token_variant": redactor.text(request.token_variant),
        "body_variant": redactor.text(request.body_variant),
        "status": redactor.text(status),
        "elapsed_ms": round(exchange.elapsed_s * 1000),
        "request_body": _excerpt(redactor.bytes(request.body)),
        "response_body": _excerpt(redactor.bytes(exchange.body)),
        "plaintext": None if step.plaintext is None else _excerpt(redactor.bytes(step.plaintext)),
        "files": files,
        "notes": [redactor.text(note) for note in exchange.notes]
        + [note for kind in step.bodies if (note := excerpt_note(step, kind)) is not None],
        "ue_keys": [redactor.text(line) for line in ue_key_lines(step.ue_keys)],
    }


def ue_key_lines(state: Mapping[str, Any] | None) -> list[str]:
    """The UE key state of a step as short lines: IDs and fingerprints, never values."""
    if not state:
        return []

    def keys(side: Mapping[str, Any]) -> str:
        parts = []
        for kind in ("trk", "ink"):
            key = side.get(kind)
            label = kind.replace("trk", "TrK").replace("ink", "InK")
            parts.append(f"{label} {key['id']} ({key['fingerprint']})" if key else f"no {label}")
        return ", ".join(parts)

    lines = [f"UE keys of user {state.get('user')} before: {keys(state.get('before') or {})}"]
    for entry in state.get("delivered") or ():
        label = str(entry.get("kind", "")).replace("trk", "TrK").replace("ink", "InK")
        if entry.get("adopted"):
            lines.append(f"delivered new {label} {entry['id']} ({entry['fingerprint']}): adopted")
        else:
            lines.append(f"delivered new {label}, not adopted: {entry.get('problem')}")
    if state.get("after") != state.get("before"):
        lines.append(f"UE keys after: {keys(state.get('after') or {})}")
    return lines


def _excerpt(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace")
    if len(text) > BODY_EXCERPT_CHARS:
        return text[:BODY_EXCERPT_CHARS] + f"\n... ({len(text) - BODY_EXCERPT_CHARS} more)"
    return text


def _coverage(requirements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    titles = {letter: title for letter, title, _low, _high in SECTIONS}
    letters = [letter for letter, *_ in SECTIONS]
    if any(not r["section"] for r in requirements):
        letters.append("")
    for letter in letters:
        reqs = [r for r in requirements if r["section"] == letter]
        if not reqs:
            continue
        verdicts = [r["verdict"] for r in reqs]
        testable = len(reqs) - verdicts.count("untestable")
        tested = sum(1 for v in verdicts if v in TESTED)
        rows.append(
            {
                "section": letter or "-",
                "title": titles.get(letter, "Other"),
                "total": len(reqs),
                "testable": testable,
                "tested": tested,
                "pass": verdicts.count("pass"),
                "fail": verdicts.count("fail"),
                "other": tested - verdicts.count("pass") - verdicts.count("fail"),
                "na": verdicts.count("n/a"),
                "not_tested": verdicts.count("not tested"),
                "percent": round(100 * tested / testable) if testable else 0,
            }
        )
    return rows
