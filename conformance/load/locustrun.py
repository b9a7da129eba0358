"""The Locust side of ``kms-conformance load``: virtual UEs, runners, master/worker messages.

Importing this module imports Locust, which monkey-patches the standard library with
gevent; only the ``load`` command imports it (conformance/load/__init__.py).

Each virtual UE is a Locust ``User`` with its own ``Probe`` (the catalogue's request
builder and HTTPS client: TLS verified against the target file's CA, the UE's own token),
so requests are built exactly as the catalogue builds them. Every exchange is reported to
Locust's statistics as a request named by its step label. A sampled iteration is handed
to the process's ``CheckerPool``.

Distributed: the master waits for ``--expect-workers`` workers, sends each the plan
(``kmsc_plan``), runs, stops, asks each worker to finish its checks (``kmsc_drain``) and
collects every worker's tally (``kmsc_result``) before it quits them.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gevent
from locust import User, constant, task
from locust.env import Environment
from locust.exception import StopUser
from locust.stats import PERCENTILES_TO_REPORT, StatsCSVFileWriter

from conformance.load.checker import CheckerPool, Job, Tally
from conformance.load.scenarios import Plan
from conformance.load.users import PatternUsers, UserPatternError
from conformance.probe.sender import MissingInput, PreconditionFailed, Probe
from conformance.profiles import Profile
from conformance.target.file import Target

DRAIN_TIMEOUT_S = 60.0
WORKER_WAIT_S = 60.0
RESULT_WAIT_S = DRAIN_TIMEOUT_S + 30.0
CHECKER_START_S = 30.0


class LoadProblem(Exception):
    """A configuration problem found while running (exit 2, one line)."""


@dataclass
class Context:
    """What the virtual UEs of this Locust process share (set before any user spawns)."""

    target: Target
    profile: Profile
    plan: Plan
    users: PatternUsers | None
    check_sample: float
    iterations: int
    pool: CheckerPool | None = None
    stride: int = 1
    offset: int = 0
    requests: dict[str, int] = field(default_factory=dict)
    iterations_done: int = 0
    problems: list[str] = field(default_factory=list)
    report: dict[str, Any] | None = None  # what this worker last sent its master
    _spawned: itertools.count[int] = field(default_factory=itertools.count)

    def next_user(self) -> Any:
        n = next(self._spawned)
        if self.users is None:
            return self.target.users[0]
        pattern = self.users.pattern
        index = pattern.first + (n * self.stride + self.offset) % pattern.count
        return self.users.user(index)


class _Shared:
    """The one ``Context`` of this process (Locust creates users without arguments)."""

    context: Context | None = None


class VirtualUE(User):
    """One UE of the pattern (or the target's first user when there is no pattern)."""

    wait_time = constant(0)

    def on_start(self) -> None:
        context = _context()
        try:
            self.ue = context.next_user()
        except UserPatternError as exc:
            context.problems.append(str(exc))
            raise StopUser() from None
        target = replace(context.target, users=(self.ue, *context.target.users))
        self.probe = Probe(target, context.profile)
        self.rng = random.Random()
        self.done = 0

    def on_stop(self) -> None:
        probe = getattr(self, "probe", None)
        if probe is not None:
            probe.close()

    @task
    def iteration(self) -> None:
        context = _context()
        scenario = context.plan.pick(self.rng)
        case = scenario.case
        assert case is not None
        exchanges = []
        complete = True
        for step in case.steps:
            exchange = None
            problem: str | None = None
            try:
                exchange = self.probe.send(step.spec, step.label)
            except (MissingInput, PreconditionFailed) as exc:
                problem = f"not sent: {exc}"
            sent = list(self.probe.exchanges)
            self.probe.exchanges.clear()
            for each in sent:
                if each is exchange:
                    continue  # reported below, against the step's own expectation
                bad = each.error or (None if each.status == 200 else f"HTTP {each.status}")
                self._report(each.label, each.elapsed_s, len(each.body), bad)
            if exchange is None:
                self._report(step.label, 0.0, 0, problem)
                complete = False
                break
            if exchange.error is None and not step.status_ok(exchange.status or 0):
                problem = f"HTTP {exchange.status}, expected {step.status_text}"
            self._report(
                step.label, exchange.elapsed_s, len(exchange.body), exchange.error or problem
            )
            exchanges.append(exchange)
            if exchange.error is not None or problem is not None:
                complete = False
                break
        context.iterations_done += 1
        self.done += 1
        if complete and context.pool is not None and self.rng.random() < context.check_sample:
            context.pool.submit(Job(scenario.name, self.ue, exchanges))
        if context.iterations and self.done >= context.iterations:
            raise StopUser()

    def _report(self, name: str, elapsed_s: float, length: int, problem: str | None) -> None:
        context = _context()
        context.requests[name] = context.requests.get(name, 0) + 1
        self.environment.events.request.fire(
            request_type="POST",
            name=name,
            response_time=elapsed_s * 1000.0,
            response_length=length,
            exception=RuntimeError(problem) if problem else None,
            context={},
        )


def _context() -> Context:
    assert _Shared.context is not None, "the load context is set before users spawn"
    return _Shared.context


@dataclass
class Outcome:
    """What a finished run hands to the output writer."""

    environment: Environment
    mode: str
    duration_s: float
    processes: list[dict[str, Any]]
    tally: Tally
    checks_done_s: float = 0.0  # from the start until the last check finished
    missing_workers: int = 0  # workers whose checks never reported: their counts are unknown


def process_report(label: str, context: Context, pool: CheckerPool | None) -> dict[str, Any]:
    tally = pool.tally if pool is not None else Tally()
    died = pool.problems() if pool is not None else []
    return {
        "id": label,
        "requests": dict(context.requests),
        "requests_total": sum(context.requests.values()),
        "iterations": context.iterations_done,
        "problems": list(dict.fromkeys([*context.problems, *died]))[:5],
        **tally.as_dict(),
    }


def merge(tallies: list[dict[str, Any]]) -> Tally:
    total = Tally()
    for part in tallies:
        for name in ("sampled", "checked", "dropped", "failed", "warned", "errors"):
            setattr(total, name, getattr(total, name) + int(part.get(name, 0)))
        total.key_sets_validated += int(part.get("key_sets_validated", 0))
        total.check_cpu_s += float(part.get("check_cpu_s", 0.0))
        for key, count in dict(part.get("failures", {})).items():
            total.failures[key] = total.failures.get(key, 0) + int(count)
        total.examples.extend(part.get("examples", []))
    total.examples = total.examples[:10]
    return total


def _csv_writer(environment: Environment, output: Path) -> tuple[StatsCSVFileWriter, Any]:
    writer = StatsCSVFileWriter(environment, PERCENTILES_TO_REPORT, str(output / "locust"))
    return writer, gevent.spawn(writer)


def _wait(runner: Any, run_time_s: float, iterations: int, users: int) -> None:
    """Until the run time is over, or every UE did its iterations."""
    started = time.monotonic()
    while time.monotonic() - started < run_time_s:
        gevent.sleep(0.2)
        if iterations and time.monotonic() - started > 1.0 and runner.user_count == 0:
            return


def run_local(
    *,
    context: Context,
    pool_factory: Callable[[str], CheckerPool],
    users: int,
    spawn_rate: float,
    run_time_s: float,
    output: Path,
) -> Outcome:
    _Shared.context = context
    # No checkers at all without a sample: "Locust alone" is then exactly that.
    pool = context.pool = pool_factory("local") if context.check_sample > 0 else None
    if pool is not None:
        pool.wait_ready(CHECKER_START_S)
    environment = Environment(user_classes=[VirtualUE])
    runner = environment.create_local_runner()
    writer, writer_greenlet = _csv_writer(environment, output)
    started = time.monotonic()
    runner.start(users, spawn_rate=spawn_rate)
    _wait(runner, run_time_s, context.iterations, users)
    runner.stop()
    duration = time.monotonic() - started
    if pool is not None:
        pool.drain(DRAIN_TIMEOUT_S)
    checks_done = time.monotonic() - started
    _stop_writer(writer, writer_greenlet)
    report = process_report("local", context, pool)
    runner.quit()
    tally = pool.tally if pool is not None else Tally()
    return Outcome(environment, "local", duration, [report], tally, checks_done)


def run_master(
    *,
    context: Context,
    bind_host: str,
    bind_port: int,
    expect_workers: int,
    users: int,
    spawn_rate: float,
    run_time_s: float,
    output: Path,
) -> Outcome:
    _Shared.context = context
    environment = Environment(user_classes=[VirtualUE])
    runner = environment.create_master_runner(bind_host, bind_port)
    results: dict[str, dict[str, Any]] = {}

    def on_result(environment: Environment, msg: Any, **_kw: Any) -> None:
        results[str(msg.node_id)] = dict(msg.data)

    planned: set[str] = set()

    def on_plan_ok(environment: Environment, msg: Any, **_kw: Any) -> None:
        planned.add(str(msg.node_id))

    runner.register_message("kmsc_result", on_result)
    runner.register_message("kmsc_plan_ok", on_plan_ok)
    deadline = time.monotonic() + WORKER_WAIT_S
    while len(runner.clients.ready) < expect_workers:
        if time.monotonic() > deadline:
            runner.quit()
            raise LoadProblem(
                f"only {len(runner.clients.ready)} of {expect_workers} worker(s) connected "
                f"within {WORKER_WAIT_S:.0f} s"
            )
        gevent.sleep(0.1)
    plan = {
        "scenario": context.plan.chosen.name,
        "check_sample": context.check_sample,
        "iterations": context.iterations,
        "stride": expect_workers,
    }
    runner.send_message("kmsc_plan", plan)
    # Every worker confirms the plan (and has its checkers) before any user spawns.
    deadline = time.monotonic() + WORKER_WAIT_S + CHECKER_START_S
    while len(planned) < expect_workers:
        if time.monotonic() > deadline:
            runner.quit()
            raise LoadProblem(f"only {len(planned)} of {expect_workers} worker(s) took the plan")
        gevent.sleep(0.05)
    writer, writer_greenlet = _csv_writer(environment, output)
    started = time.monotonic()
    runner.start(users, spawn_rate=spawn_rate)
    _wait(runner, run_time_s, context.iterations, users)
    runner.stop()
    duration = time.monotonic() - started
    workers = len(runner.clients.all)
    runner.send_message("kmsc_drain", {})
    deadline = time.monotonic() + RESULT_WAIT_S
    while len(results) < workers and time.monotonic() < deadline:
        gevent.sleep(0.1)
    checks_done = time.monotonic() - started
    gevent.sleep(0.5)  # the stats frame each worker sent before its result
    _stop_writer(writer, writer_greenlet)
    runner.quit()
    if len(results) < workers:
        context.problems.append(f"only {len(results)} of {workers} worker(s) reported their checks")
    processes = [results[k] for k in sorted(results)]
    tally = merge(processes)
    outcome = Outcome(environment, "distributed", duration, processes, tally, checks_done)
    outcome.missing_workers = max(0, workers - len(results))
    return outcome


def run_worker(
    *,
    context: Context,
    pool_factory: Callable[[str], CheckerPool],
    master_host: str,
    master_port: int,
    scenarios: Any,
) -> int:
    _Shared.context = context
    from conformance.load.scenarios import plan_for

    environment = Environment(user_classes=[VirtualUE])
    try:
        # Locust retries for CONNECT_TIMEOUT x CONNECT_RETRY_COUNT (5 min) before giving up.
        runner = environment.create_worker_runner(master_host, master_port)
    except ConnectionError:
        raise LoadProblem(f"no master answered at {master_host}:{master_port}") from None

    def on_plan(environment: Environment, msg: Any, **_kw: Any) -> None:
        data = dict(msg.data)
        context.plan = plan_for(str(data["scenario"]), scenarios)
        context.check_sample = float(data["check_sample"])
        context.iterations = int(data["iterations"])
        context.stride = max(1, int(data["stride"]))
        context.offset = max(0, runner.worker_index)
        if context.pool is None and context.check_sample > 0:
            context.pool = pool_factory(f"worker{runner.worker_index}")
            context.pool.wait_ready(CHECKER_START_S)
        runner.send_message("kmsc_plan_ok", {})

    def on_drain(environment: Environment, msg: Any, **_kw: Any) -> None:
        pool = context.pool
        name = f"worker{runner.worker_index}"
        if pool is not None:
            pool.drain(DRAIN_TIMEOUT_S)
        # Our own counts must meet Locust's: flush this worker's statistics first.
        runner._send_stats()
        context.report = process_report(name, context, pool)
        runner.send_message("kmsc_result", context.report)

    # Registered before anything yields to the gevent loop: a message that arrives before
    # its handler is dropped by Locust with a warning.
    runner.register_message("kmsc_plan", on_plan, concurrent=True)
    runner.register_message("kmsc_drain", on_drain, concurrent=True)
    runner.greenlet.join()
    if context.pool is not None:
        context.pool.close()
    return 0


def _stop_writer(writer: StatsCSVFileWriter, greenlet: Any) -> None:
    greenlet.kill(block=True)
    # One last complete write: the loop above writes every couple of seconds.
    with open(writer.base_filepath + "_stats.csv", "w", newline="") as handle:
        import csv

        writer.requests_csv(csv.writer(handle))
    writer.close_files()


def write_locust_html(environment: Environment, path: Path) -> None:
    from locust.html import get_html_report

    page = get_html_report(environment, show_download_link=False)  # type: ignore[no-untyped-call]
    path.write_text(page, encoding="utf-8")
