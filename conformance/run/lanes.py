"""Cases run concurrently: ``kms-conformance run -n N`` (issue 15).

Waiting for the KMS, not computing, is what a run mostly does against a remote KMS, and
against the embedded one the harness and the KMS take turns on the CPU; so N lanes, each
with its own ``Runner`` (probe, HTTPS connections, first KMS Initialize), send the cases
while the pytest items consume their results in catalogue order. Results, reports and
Allure attachments are made in the main process as in a serial run: only the order in
which exchanges reach the KMS changes.

Where the system can fork (Linux), a lane is a process forked from the run once every
import, the catalogue, the compiled schemas and the crypto tables are in memory
(``ForkLanes``): the lanes share all of that copy-on-write, each has its own interpreter
lock, and a case runs on its lane's main thread, where ``limits.case_cpu_s`` is enforced
as in a serial run. A case's result (with only excerpts of its bodies: the lane wrote its
evidence) comes back through a pipe. Elsewhere the lanes are threads of the run's process
(``Lanes``).

The lane rule (testcases/FORMAT.md, "Concurrency"): the cases of one ``serial_group`` run
one after another in catalogue order in one lane; a case with ``changes_state: true``
runs alone, after every case before it in the catalogue has finished and before any
case after it starts, so no other case sees a user's state change under it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for_pipes
from typing import Any

from conformance.catalogue.cases import Case
from conformance.verdicts.results import CaseResult

RunCase = Callable[[Case], CaseResult]
# Set KMS_CONFORMANCE_LANES=threads to run the lanes as threads where forking works too.
LANES_ENV = "KMS_CONFORMANCE_LANES"


def start_lanes(
    cases: Sequence[Case], workers: int, new_runner: Callable[[], RunCase]
) -> CaseLanes:
    """Lanes of forked processes where the system forks (Linux), else of threads."""
    if can_fork() and os.environ.get(LANES_ENV, "") != "threads":
        return ForkLanes(cases, workers, new_runner)
    return Lanes(cases, workers, new_runner)


def can_fork() -> bool:
    """Forking a process that holds threads and TLS state is sound on Linux only."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


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


class CaseLanes:
    """What both kinds of lanes share: a future per case, which ``result`` waits for, and
    a dispatcher thread that hands out the plan (``segments``) segment by segment."""

    def __init__(self, cases: Sequence[Case]) -> None:
        self._futures: dict[str, Future[CaseResult]] = {c.id: Future() for c in cases}
        self._stopped = threading.Event()
        self._dispatcher = threading.Thread(
            target=self._dispatch_all, args=(segments(cases),), name="kms-lanes", daemon=True
        )

    def result(self, case_id: str) -> CaseResult:
        return self._futures[case_id].result()

    def close(self) -> None:
        """Stop starting cases (an interrupted session), and end the lanes."""
        raise NotImplementedError

    def _stop(self) -> None:
        self._stopped.set()
        self._dispatcher.join()

    def _dispatch_all(self, plan: list[list[list[Case]]]) -> None:
        try:
            for segment in plan:
                if self._stopped.is_set() or not self._dispatch(segment):
                    break
        finally:
            self._fail([i for i, f in self._futures.items() if not f.done()], "stopped")

    def _dispatch(self, segment: list[list[Case]]) -> bool:
        """Run one segment to its end; False when no more can run."""
        raise NotImplementedError

    def _fail(self, case_ids: list[str], why: str) -> None:
        for case_id in case_ids:
            future = self._futures[case_id]
            if not future.done():
                future.set_exception(RuntimeError(f"the run was stopped before this case: {why}"))


class Lanes(CaseLanes):
    """Runs ``cases`` in ``workers`` threads; ``result(case_id)`` waits for one."""

    def __init__(self, cases: Sequence[Case], workers: int, new_runner: Callable[[], RunCase]):
        super().__init__(cases)
        self._new_runner = new_runner
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kms-lane")
        self._dispatcher.start()

    def close(self) -> None:
        """Stop starting cases (an interrupted session), and wait for the running ones."""
        self._stop()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _dispatch(self, segment: list[list[Case]]) -> bool:
        try:
            running = [self._pool.submit(self._run_unit, unit) for unit in segment]
        except RuntimeError:  # the pool was shut down
            return False
        wait(running)  # the next segment starts once this one has finished
        return True

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


class ForkLanes(CaseLanes):
    """Runs ``cases`` in ``workers`` forked processes; ``result(case_id)`` waits for one.

    A lane process takes one unit at a time from the dispatcher (a thread of the run),
    runs its cases in order and sends each result back as it ends, then says the unit is
    done. A lane that dies fails the cases of its unit; the others go on.
    """

    def __init__(self, cases: Sequence[Case], workers: int, new_runner: Callable[[], RunCase]):
        super().__init__(cases)
        by_id = {case.id: case for case in cases}
        context = multiprocessing.get_context("fork")
        self._lanes: list[tuple[Any, Connection]] = []
        for number in range(max(1, min(workers, len(cases)))):
            mine, theirs = context.Pipe(duplex=True)
            process = context.Process(
                target=_lane_main,
                args=(theirs, mine, new_runner, by_id),
                name=f"kms-lane-{number + 1}",
                daemon=True,
            )
            process.start()
            theirs.close()
            self._lanes.append((process, mine))
        self._idle = [pipe for _, pipe in self._lanes]
        self._dispatcher.start()

    def close(self) -> None:
        """Stop starting cases (an interrupted session), let the lanes finish and end."""
        self._stop()
        for _, pipe in self._lanes:
            with contextlib.suppress(OSError):
                pipe.send(None)  # the lane closes its connections and ends
        for process, pipe in self._lanes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join(5)
            pipe.close()

    def _dispatch(self, segment: list[list[Case]]) -> bool:
        units = [[case.id for case in unit] for unit in segment]
        busy: dict[Connection, list[str]] = {}  # lane -> the cases of its unit not done
        while (units or busy) and not self._stopped.is_set():
            while units and self._idle:
                pipe = self._idle.pop()
                busy[pipe] = units.pop(0)
                try:
                    pipe.send(busy[pipe])
                except OSError:
                    self._lane_lost(busy.pop(pipe))
            if not busy:
                if units:  # every lane is gone
                    self._fail([i for unit in units for i in unit], "no lane is left")
                return False
            for ready in wait_for_pipes(list(busy)):
                assert isinstance(ready, Connection)
                if self._receive(ready, busy):
                    self._idle.append(ready)
        return not self._stopped.is_set()

    def _receive(self, pipe: Connection, busy: dict[Connection, list[str]]) -> bool:
        """Take one message of a lane; whether the lane is idle again."""
        try:
            message = pipe.recv()
        except (EOFError, OSError):
            self._lane_lost(busy.pop(pipe))
            return False
        if message == "unit-done":
            busy.pop(pipe, None)
            return True
        case_id, result, error = message
        if case_id in busy.get(pipe, []):
            busy[pipe].remove(case_id)
        future = self._futures[case_id]
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(RuntimeError(error))
        return False

    def _lane_lost(self, pending: list[str]) -> None:
        self._fail(pending, "its lane's process ended before the case did")


def _lane_main(
    pipe: Connection, parents_end: Connection, new_runner: Callable[[], RunCase], cases: Any
) -> None:
    """A lane process: run the units it is sent until it is sent None."""
    parents_end.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run's process handles ^C
    run_case: RunCase | None = None
    closers: list[Callable[[], None]] = []
    try:
        while True:
            try:
                unit = pipe.recv()
            except (EOFError, OSError):
                break
            if unit is None:
                break
            for case_id in unit:
                try:
                    if run_case is None:
                        run_case = new_runner()
                        closers.append(getattr(run_case, "close", lambda: None))
                    pipe.send((case_id, run_case(cases[case_id]), None))
                except BaseException as exc:  # the item reports it as an error
                    pipe.send((case_id, None, f"{type(exc).__name__}: {exc}"))
            pipe.send("unit-done")
    finally:
        for close in closers:
            close()
        pipe.close()
