"""Reporters: results.json, junit.xml, report.html and evidence/ (DESIGN.md sections 5, 6).

``write_reports`` is the one entry point the run command calls. Every file goes through one
``Redactor`` built from the run's secrets plus the private key material found in the
recorded bodies not already redacted at capture (``redact.Capture``), and is written to a
temporary file first and renamed into place, so an interrupted run never leaves half a file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from conformance.report import html, junit
from conformance.report.evidence import (
    LEDGER_NAME,
    EvidenceBudget,
    atomic_write,
    case_dirs,
    write_case_evidence,
)
from conformance.report.redact import Redactor, key_material
from conformance.report.results_json import build_document, to_bytes
from conformance.verdicts.results import RunResult, SecretValue

__all__ = ["Redactor", "redactor_for_run", "write_reports"]


def write_reports(run: RunResult, out_dir: Path) -> dict[str, Path]:
    """Write results.json, junit.xml, report.html and evidence/ into ``out_dir`` (created).

    Returns the paths by kind: ``results``, ``junit``, ``html``, ``evidence``. An earlier
    ``evidence/`` in ``out_dir`` is replaced as a whole; the cases whose evidence was
    written as they ended (``evidence.spill_case``) are not written again.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    redactor = redactor_for_run(run)
    dirs = case_dirs(case.id for case in run.cases)
    dirs.update({c.id: c.evidence_dir for c in run.cases if c.evidence_dir is not None})
    paths = {
        "results": out_dir / "results.json",
        "junit": out_dir / "junit.xml",
        "html": out_dir / "report.html",
        "evidence": out_dir / "evidence",
    }
    written = _write_evidence_tree(run, redactor, dirs, paths["evidence"])
    document = build_document(run, redactor, dirs)
    document["evidence"] = _evidence_summary(run, written)
    atomic_write(paths["results"], to_bytes(document))
    atomic_write(paths["junit"], junit.render(run, redactor, dirs))
    atomic_write(paths["html"], html.render(run, redactor, document).encode("utf-8"))
    return paths


def redactor_for_run(run: RunResult) -> Redactor:
    """The redactor for everything written about ``run``: its secrets plus the RSK/SSK and
    new TrK/InK material found in its bodies, so check messages quoting them are covered."""
    found: list[SecretValue] = []
    clean: list[bytes] = []
    for case in run.cases:
        found.extend(case.found_secrets)  # what its whole bodies held (they are excerpts now)
        found.extend(case.secrets)  # keys the case learnt (delivered TrK/InK)
        for step in case.steps:
            if step.redacted:  # at capture (report.redact.Capture): written as they are
                clean.extend(step.all_bodies())
                continue
            for body in step.all_bodies():
                found.extend(key_material(body))
    return Redactor([*run.secrets, *found], clean)


def _evidence_summary(run: RunResult, written: int) -> dict[str, object]:
    """results.json "evidence": octets written, the budget, and the cases it cut."""
    cut = [case.id for case in run.cases if case.evidence_notes]
    summary: dict[str, object] = {"bytes": written, "truncated": bool(cut), "truncated_cases": cut}
    if run.max_evidence_bytes is not None:
        summary["max_evidence_bytes"] = run.max_evidence_bytes
    return summary


def _write_evidence_tree(
    run: RunResult, redactor: Redactor, dirs: dict[str, str], evidence: Path
) -> int:
    """Build evidence/ beside its final place (or complete the folder the cases wrote
    into while they ran), then swap it in with renames; return the octets it holds."""
    if run.evidence_staging is not None and run.evidence_staging.is_dir():
        staging = run.evidence_staging
    else:
        staging = Path(tempfile.mkdtemp(prefix=".evidence-", dir=evidence.parent))
    budget = None
    if run.max_evidence_bytes is not None:
        budget = EvidenceBudget(run.max_evidence_bytes, staging / LEDGER_NAME)
    try:
        for case in run.cases:
            if not case.evidence_written:
                write_case_evidence(case, staging / dirs[case.id], redactor, budget)
        (staging / LEDGER_NAME).unlink(missing_ok=True)
        written = sum(f.stat().st_size for f in staging.rglob("*") if f.is_file())
        os.chmod(staging, 0o755)
        old = None
        if evidence.exists():
            old = Path(tempfile.mkdtemp(prefix=".evidence-old-", dir=evidence.parent))
            os.replace(evidence, old / "evidence")
        os.replace(staging, evidence)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return written
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
