"""Evidence written while the run goes on, not all at its end (issue 15).

A run's evidence is thousands of small files, and creating a file is mostly kernel time,
which a thread spends without holding the GIL. ``EvidenceStage`` writes each finished
case's evidence (already redacted at capture) into a staging directory from one writer
thread, so the file system works while the cases run; ``write_reports(run, out, stage)``
then writes only what is left and swaps the staging directory in, as it would its own.

The result is byte for byte what ``write_reports`` alone writes: the same directory names
(``case_dirs`` of the selected cases in catalogue order; a run whose cases differ, such
as an interrupted one, has its staged files dropped and written again) and the same
redactor (the run's secrets, the case's capture-redacted bodies passed through as is).
"""

from __future__ import annotations

import queue
import shutil
import tempfile
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from conformance.report.evidence import case_dirs, write_case_evidence
from conformance.report.redact import Redactor
from conformance.results import CaseResult, SecretValue

_DONE = None


class EvidenceStage:
    """One writer thread filling ``<out>/.evidence-XXXX/`` with finished cases."""

    def __init__(
        self, out_dir: Path, case_ids: Sequence[str], secrets: Iterable[SecretValue]
    ) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=".evidence-", dir=out_dir))
        self.ids = tuple(case_ids)
        self.dirs = case_dirs(self.ids)
        self.written: set[str] = set()
        self._redactor = Redactor(secrets)
        self._queue: queue.Queue[CaseResult | None] = queue.Queue()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._write, name="kms-evidence", daemon=True)
        self._thread.start()

    def add(self, case: CaseResult) -> None:
        """Queue a finished case; only cases redacted at capture are staged."""
        if case.id in self.dirs and all(step.redacted for step in case.steps):
            self._queue.put(case)

    def finish(self, ids: Sequence[str]) -> set[str]:
        """Wait for the writer; the ids written, or none when ``ids`` (the run's cases in
        order) would name the directories differently or writing failed."""
        self._queue.put(_DONE)
        self._thread.join()
        if self._failed is not None or case_dirs(ids) != {i: self.dirs.get(i) for i in ids}:
            self.discard()
            return set()
        return set(self.written)

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        self.written.clear()

    def _write(self) -> None:
        while True:
            case = self._queue.get()
            if case is _DONE:
                return
            if self._failed is not None:
                continue
            try:
                bodies = [
                    body
                    for step in case.steps
                    for body in (step.exchange.body, step.exchange.request.body, step.plaintext)
                    if body
                ]
                write_case_evidence(
                    case, self.staging / self.dirs[case.id], self._redactor.with_clean(bodies)
                )
                self.written.add(case.id)
            except BaseException as exc:  # written again at the end, by write_reports
                self._failed = exc
