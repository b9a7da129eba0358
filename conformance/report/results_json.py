"""results.json, the machine-readable result of a run (DESIGN.md section 5).

The document is versioned (``"schema": "kms-conformance/results/1"``) and described by
``results.schema.json`` beside this module. Besides the keys DESIGN.md lists, cases carry
their area, one-line reason and request types, checks their clause and strength, and
requirements their title (and the reason when the probe cannot test them): additions a
consumer of version 1 may ignore.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from conformance.report.redact import Redactor
from conformance.verdicts.outcomes import CheckResult, Verdict
from conformance.verdicts.results import CaseResult, RequirementInfo, RunResult

SCHEMA_ID = "kms-conformance/results/1"
SCHEMA_FILE = Path(__file__).with_name("results.schema.json")

NOT_TESTED = "not tested"
UNTESTABLE = "untestable"

# Clause sections of spec/requirements.md by REQ number (inclusive ranges).
SECTIONS: tuple[tuple[str, str, int, int], ...] = (
    ("A", "Transport, routing, authentication", 1, 21),
    ("B", "KmsRequest handling", 30, 41),
    ("C", "KmsResponse envelope", 50, 65),
    ("D", "KMS Initialize response", 70, 81),
    ("E", "KMS KeyProvision response", 90, 108),
    ("F", "KMS CertCache, Cert, Lookup", 110, 117),
    ("G", "Confidentiality and integrity", 120, 130),
    ("H", "Errors", 140, 145),
    ("I", "Transport security", 150, 152),
    ("J", "Profiles and interoperability", 160, 164),
)


def build_document(run: RunResult, redactor: Redactor, evidence_dirs: Mapping[str, str]) -> Any:
    """The results.json document, every string redacted.

    ``evidence_dirs`` maps a case id to its directory name under ``evidence/``.
    """
    target = dict(run.target)
    target.setdefault("pics", run.pics)
    document = {
        "schema": SCHEMA_ID,
        "tool_version": run.tool_version,
        "started": run.started.isoformat(timespec="seconds"),
        "duration_s": round(run.duration_s, 3),
        "target": target,
        "profile": run.profile,
        "summary": run.summary(),
        "requirements": requirement_rows(run),
        "cases": [_case(case, evidence_dirs.get(case.id, case.id)) for case in run.cases],
    }
    if run.waivers is not None:  # run --waivers: what each waiver did (absent otherwise)
        document["waivers"] = run.waivers
    return redact_tree(document, redactor)


class ResultsFileError(Exception):
    """A results.json that cannot be read back; the message is one line."""


def read_results(file: Path, *, missing: str) -> dict[str, Any]:
    """The results document in ``file``, checked against results.schema.json;
    ``missing`` says, when there is no such file, what the user should give instead."""
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsFileError(f"{file}: not found ({missing})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsFileError(f"{file}: not readable JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA_ID:
        raise ResultsFileError(f"{file}: not a {SCHEMA_ID} document")
    problem = schema_problem(document)
    if problem:
        raise ResultsFileError(f"{file}: not a valid results document: {problem}")
    return document


def schema_problem(document: Any) -> str | None:
    """Why ``document`` is not a valid results document (results.schema.json), or None."""
    import jsonschema

    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    errors = jsonschema.Draft202012Validator(schema).iter_errors(document)
    error = jsonschema.exceptions.best_match(errors)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "document"
    return f"{where}: {error.message}"


def to_bytes(document: Any) -> bytes:
    """The document as written: UTF-8 JSON, indented, newline at the end."""
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def requirement_rows(run: RunResult) -> list[dict[str, Any]]:
    """One row per requirement: its cases and the verdict they give it."""
    cases_by_req: dict[str, list[CaseResult]] = {}
    for case in run.cases:
        for req in case_reqs(case):
            cases_by_req.setdefault(req, []).append(case)
    rows = []
    for info in run.requirements:
        cases = cases_by_req.get(info.id, [])
        row: dict[str, Any] = {
            "id": info.id,
            "clause": info.clause,
            "strength": info.strength,
            "title": info.title,
            "section": section_of(info.id),
            "cases": [case.id for case in cases],
            "verdict": requirement_verdict(info, [case.verdict for case in cases]),
        }
        if not info.probe_testable:
            row["untestable_reason"] = info.untestable_reason or "not testable over the interface"
        rows.append(row)
    return rows


def requirement_verdict(info: RequirementInfo, verdicts: Iterable[Verdict]) -> str:
    """The verdict a requirement gets from its cases.

    A confirmed violation wins (``fail`` before ``error``: a harness error in one case does
    not hide a failure seen in another); otherwise the worst verdict by rank, with ``n/a``
    cases left out unless every case was ``n/a``. No case: ``not tested`` (or ``untestable``
    when the requirement cannot be probed).
    """
    seen = list(verdicts)
    if not seen:
        return NOT_TESTED if info.probe_testable else UNTESTABLE
    if Verdict.FAIL in seen:
        return Verdict.FAIL.value
    applicable = [v for v in seen if v is not Verdict.NA]
    if not applicable:
        return Verdict.NA.value
    return max(applicable, key=lambda v: v.rank).value


def case_reqs(case: CaseResult) -> list[str]:
    """The REQ ids a case tests: its own and those its checks name, in first-seen order."""
    reqs = dict.fromkeys(case.reqs)
    for check in case.checks:
        reqs.update(dict.fromkeys(check.reqs))
    return list(reqs)


def section_of(req_id: str) -> str:
    """The clause section letter (A..J) of a REQ id, or "" when outside every range."""
    digits = "".join(ch for ch in req_id if ch.isdigit())
    if not digits:
        return ""
    number = int(digits)
    for letter, _title, low, high in SECTIONS:
        if low <= number <= high:
            return letter
    return ""


def check_dict(check: CheckResult) -> dict[str, Any]:
    return {
        "name": check.name,
        "outcome": check.outcome.value,
        "reqs": list(check.reqs),
        "message": check.message,
        "expected": check.expected,
        "observed": check.observed,
        "clause": check.clause,
        "strength": check.strength.value,
    }


def redact_tree(value: Any, redactor: Redactor) -> Any:
    """A copy of a JSON-like value with every string, key or value, redacted."""
    if isinstance(value, str):
        return redactor.text(value)
    if isinstance(value, bytes):
        return redactor.text(value.decode("utf-8", errors="replace"))
    if isinstance(value, Mapping):
        return {redactor.text(str(k)): redact_tree(v, redactor) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_tree(v, redactor) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redactor.text(str(value))


def _case(case: CaseResult, evidence_dir: str) -> dict[str, Any]:
    fields = {**case_fields(case), "evidence": f"evidence/{evidence_dir}/"}
    if case.evidence_notes:  # bodies cut by limits.max_evidence_bytes
        fields["evidence_notes"] = list(case.evidence_notes)
    return fields


def case_fields(case: CaseResult) -> dict[str, Any]:
    """A case as results.json and evidence/<id>/case.json both describe it."""
    return {
        "id": case.id,
        "title": case.title,
        "area": case.area,
        "verdict": case.verdict.value,
        "reason": case.reason,
        "reqs": list(case.reqs),
        "clauses": list(case.clauses),
        "request_types": list(case.request_types),
        "strength": case.strength,
        "duration_s": round(case.duration_s, 3),
        "warnings": case.warnings,
        "checks": [check_dict(check) for check in case.checks],
        # The waiver that decided the case (run --waivers only); "verdict" stays as judged.
        **({"waived": case.waived, "waiver": case.waiver} if case.waiver else {}),
    }
