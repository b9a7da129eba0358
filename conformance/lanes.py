"""Cases run concurrently inside one process: ``kms-conformance run -n N`` (issue 15).

Waiting for the KMS, not computing, is what a run mostly does against a remote KMS, and
against the embedded one the harness and the KMS take turns on the CPU; so N worker
threads, each with its own ``Runner`` (probe, HTTPS connections, first KMS Initialize)
but sharing this process's imports, compiled schemas and crypto tables, send the cases
while the pytest items consume their results in catalogue order. Results, reports and
Allure attachments are made in the main thread as in a serial run: only the order in
which exchanges reach the KMS changes.

The lane rule (testcases/FORMAT.md, "Concurrency"): the cases of one ``serial_group`` run
one after another in catalogue order in one lane; a case with ``changes_state: true``
runs alone, after every case before it in the catalogue has finished and before any
case after it starts, so no other case sees a user's state change under it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait

from conformance.cases import Case
from conformance.results import CaseResult

RunCase = Callable[[Case], CaseResult]


def segments(cases: Sequence[Case]) -> list[list[list[Case]]]:
    """The catalogue cut into segments that run one after another, each a list of units
    that may run concurrently; a unit's cases run in order in one lane."""
    out: list[list[list[Case]]] = []
    current: list[list[Case]] = []
    groups: dict[str, list[Case]] = {}
    for case in cases:
        if case.changes_state:
            if current:
                out.append(current)
            out.append([[case]])
            current, groups = [], {}
            continue
        if case.serial_group:
            unit = groups.get(case.serial_group)
            if unit is None:
                unit = groups[case.serial_group] = []
                current.append(unit)
            unit.append(case)
        else:
            current.append([case])
    if current:
        out.append(current)
    return out


class Lanes:
    """Runs ``cases`` in ``workers`` threads; ``result(case_id)`` waits for one."""

    def __init__(self, cases: Sequence[Case], workers: int, new_runner: Callable[[], RunCase]):
        self._futures: dict[str, Future[CaseResult]] = {c.id: Future() for c in cases}
        self._new_runner = new_runner
        self._local = threading.local()
        self._stopped = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kms-lane")
        self._dispatcher = threading.Thread(
            target=self._dispatch, args=(segments(cases),), name="kms-lanes", daemon=True
        )
        self._dispatcher.start()

    def result(self, case_id: str) -> CaseResult:
        return self._futures[case_id].result()

    def close(self) -> None:
        """Stop starting cases (an interrupted session), and wait for the running ones."""
        self._stopped.set()
        self._dispatcher.join()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _dispatch(self, plan: list[list[list[Case]]]) -> None:
        for segment in plan:
            if self._stopped.is_set():
                break
            try:
                running = [self._pool.submit(self._run_unit, unit) for unit in segment]
            except RuntimeError:  # the pool was shut down
                break
            wait(running)  # the next segment starts once this one has finished
        for future in self._futures.values():
            if not future.done():
                future.set_exception(RuntimeError("the run was stopped before this case"))

    def _run_unit(self, unit: list[Case]) -> None:
        run_case = getattr(self._local, "run_case", None)
        if run_case is None:
            run_case = self._local.run_case = self._new_runner()
        for case in unit:
            future = self._futures[case.id]
            if self._stopped.is_set():
                break
            try:
                future.set_result(run_case(case))
            except BaseException as exc:  # the item reports it as an error
                future.set_exception(exc)
