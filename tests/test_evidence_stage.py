"""Evidence written while the run goes on (report/stage.py) is what write_reports writes.

The cases of the reports' sample run are redacted at capture (as the engine does), then
written twice: once staged case by case from the writer thread, once by write_reports
alone. Every evidence file is the same, byte for byte and mode for mode; no staging
directory is left behind; a stage that does not match the run's cases is dropped and the
evidence written in full.
"""

from __future__ import annotations

import os
from pathlib import Path

from test_reports import sample_run

from conformance.report import write_reports
from conformance.report.redact import Capture
from conformance.report.stage import EvidenceStage
from conformance.results import RunResult


def _captured() -> RunResult:
    run = sample_run()
    capture = Capture(run.secrets)
    for case in run.cases:
        capture.case(case)
    return run


def _tree(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), os.stat(p).st_mode)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_staged_evidence_equals_evidence_written_at_the_end(tmp_path: Path) -> None:
    run = _captured()
    plain = tmp_path / "plain"
    write_reports(run, plain)
    staged = tmp_path / "staged"
    stage = EvidenceStage(staged, [c.id for c in run.cases], run.secrets)
    for case in run.cases:
        stage.add(case)
    write_reports(run, staged, stage)
    assert _tree(staged / "evidence") == _tree(plain / "evidence")
    assert len(_tree(plain / "evidence")) > 10
    assert sorted(p.name for p in staged.iterdir()) == sorted(p.name for p in plain.iterdir())


def test_a_stage_for_other_cases_is_dropped_and_evidence_written_in_full(tmp_path: Path) -> None:
    run = _captured()
    plain = tmp_path / "plain"
    write_reports(run, plain)
    out = tmp_path / "out"
    stage = EvidenceStage(out, ["SOMETHING-ELSE-001"], run.secrets)
    stage.add(run.cases[0])
    write_reports(run, out, stage)
    assert _tree(out / "evidence") == _tree(plain / "evidence")
    assert not [p for p in out.iterdir() if p.name.startswith(".evidence-")]
