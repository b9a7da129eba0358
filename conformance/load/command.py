"""``kms-conformance load``: options, the target (or the embedded KMS), the run, the reports.

Exit status: 0 when no conformance failure and every threshold given holds, 1 otherwise,
2 on a configuration error (one line), 3 when iterations were sampled but none could be
checked. A worker exits 0 once its master quits it.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from conformance.load.output import EXIT_CONFIG, Thresholds

DEFAULT_MASTER_PORT = 5557


class LoadUsage(Exception):
    """A bad option or target: exit 2 with this one line."""


@dataclass
class LoadOptions:
    target: str | None = None
    users: int = 10
    spawn_rate: float | None = None
    run_time: str = "30s"
    scenario: str = "provision"
    check_sample: float = 1.0
    master: bool = False
    worker: bool = False
    master_host: str | None = None
    master_port: int = DEFAULT_MASTER_PORT
    master_bind_host: str = "127.0.0.1"
    expect_workers: int = 1
    output: str = "reports/load"
    max_p95_ms: float | None = None
    min_rps: float | None = None
    max_error_rate: float | None = None
    iterations: int = 0
    checkers: int = 1
    max_pending: int = 64
    faults: list[str] = field(default_factory=list)


def run_load(options: LoadOptions, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    try:
        return _run(options, out, err)
    except LoadUsage as exc:
        print(f"kms-conformance load: {exc}", file=err)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("kms-conformance load: interrupted", file=err)
        return EXIT_CONFIG


def _validate(options: LoadOptions) -> float:
    from locust.util.timespan import parse_timespan

    if options.master and options.worker:
        raise LoadUsage("give --master or --worker, not both")
    if options.worker and not options.master_host:
        raise LoadUsage("--worker needs --master-host H")
    if options.master_host and not options.worker:
        raise LoadUsage("--master-host is for --worker")
    if (options.master or options.worker) and not options.target:
        raise LoadUsage(
            "--master/--worker need --target FILE (every process must reach the same KMS; "
            "start one with `kms-conformance serve --users N`)"
        )
    if options.faults and options.target:
        raise LoadUsage("--embedded-fault needs the embedded reference KMS (no --target)")
    if options.users < 1:
        raise LoadUsage("--users must be at least 1")
    if options.spawn_rate is not None and options.spawn_rate <= 0:
        raise LoadUsage("--spawn-rate must be positive")
    if not 0.0 <= options.check_sample <= 1.0:
        raise LoadUsage("--check-sample must lie in 0..1")
    if options.expect_workers < 1:
        raise LoadUsage("--expect-workers must be at least 1")
    if options.checkers < 1 or options.max_pending < 1:
        raise LoadUsage("--checkers and --max-pending must be at least 1")
    if options.iterations < 0:
        raise LoadUsage("--iterations must be 0 (no limit) or more")
    try:
        seconds = float(parse_timespan(options.run_time))
    except (ValueError, TypeError):
        raise LoadUsage(f"--run-time {options.run_time!r}: use e.g. 10s, 2m, 1h30m") from None
    if seconds <= 0:
        raise LoadUsage("--run-time must be positive")
    return seconds


def _run(options: LoadOptions, out: TextIO, err: TextIO) -> int:
    run_time_s = _validate(options)
    from conformance.load.scenarios import ScenarioError, load_scenarios, plan_for

    try:
        scenarios = load_scenarios()
        plan = plan_for(options.scenario, scenarios)
    except ScenarioError as exc:
        raise LoadUsage(str(exc)) from None
    output = Path(options.output)
    output.mkdir(parents=True, exist_ok=True)
    with _target(options, err) as (target_path, label):
        context = _context(target_path, plan, options)
        if not options.master:
            _preflight(context.target)
        return _dispatch(
            options=options,
            context=context,
            scenarios=scenarios,
            target_path=target_path,
            label=label,
            run_time_s=run_time_s,
            output=output,
            out=out,
        )


@contextlib.contextmanager
def _target(options: LoadOptions, err: TextIO) -> Iterator[tuple[Path, str]]:
    from conformance.run.runcmd import UsageProblem, embedded_kms

    if options.target:
        path = Path(options.target)
        if not path.is_file():
            raise LoadUsage(f"{path}: target file not found")
        yield path, ""
        return
    try:
        with embedded_kms(options.faults, err=err, users=options.users) as (path, label):
            yield path, label
    except UsageProblem as exc:
        raise LoadUsage(str(exc)) from None


def _context(target_path: Path, plan: Any, options: LoadOptions) -> Any:
    from conformance.load.locustrun import Context
    from conformance.load.users import PatternUsers
    from conformance.profiles import ProfileError, get_profile
    from conformance.target.file import TargetFileError, load_target

    try:
        target = load_target(target_path)
        profile = get_profile(target.profile.release)
    except (TargetFileError, ProfileError) as exc:
        raise LoadUsage(str(exc)) from None
    pattern = target.extra.get("user_pattern")
    context = Context(
        target=target,
        profile=profile,
        plan=plan,
        users=PatternUsers(pattern) if pattern is not None else None,
        check_sample=options.check_sample,
        iterations=options.iterations,
    )
    if pattern is None:
        context.problems.append("the target file has no [user_pattern]: every UE is users[1]")
    elif pattern.count < options.users:
        context.problems.append(
            f"{options.users} users but [user_pattern] has {pattern.count} UEs: some UEs "
            "are played by more than one user"
        )
    return context


def _preflight(target: Any) -> None:
    """An unreachable target is exit 2 before any load, not thousands of errors."""
    from conformance.probe.sender import MissingInput, PreconditionFailed, Probe
    from conformance.profiles import get_profile

    try:
        with Probe(target, get_profile(target.profile.release)) as probe:
            exchange = probe.send({"request": "init"}, "preflight")
    except (MissingInput, PreconditionFailed):
        return
    if exchange.error is not None and exchange.error_kind in ("connect", "tls"):
        raise LoadUsage(
            f"{target.path}: target.base_url {target.target.base_url} unreachable: {exchange.error}"
        )


def _dispatch(
    *,
    options: LoadOptions,
    context: Any,
    scenarios: Any,
    target_path: Path,
    label: str,
    run_time_s: float,
    output: Path,
    out: TextIO,
) -> int:
    from conformance.load import locustrun
    from conformance.load.checker import CheckerPool

    def pool(process_label: str) -> CheckerPool:
        settings = {
            "target": str(target_path),
            "output": str(output),
            "label": process_label,
            "evidence_limit": 5,
        }
        return CheckerPool(
            settings,
            processes=options.checkers,
            max_pending=options.max_pending,
            log=output / f"checker-{process_label}.log",
        )

    users = options.users
    spawn_rate = options.spawn_rate or float(users)
    if options.worker:
        assert options.master_host is not None
        print(
            f"kms-conformance load: worker waiting for the master at "
            f"{options.master_host}:{options.master_port}",
            file=out,
            flush=True,
        )
        try:
            code = locustrun.run_worker(
                context=context,
                pool_factory=pool,
                master_host=options.master_host,
                master_port=options.master_port,
                scenarios=scenarios,
            )
        except locustrun.LoadProblem as exc:
            raise LoadUsage(str(exc)) from None
        sent = context.report
        if sent is None:
            print("kms-conformance load: the master quit before this worker reported", file=out)
            return EXIT_CONFIG
        print(
            f"kms-conformance load: {sent['id']} sent {sent['requests_total']} requests; "
            f"{sent['checked']} of {sent['sampled']} sampled iterations checked, "
            f"{sent['dropped']} dropped, {sent['failed']} failed; the master reports the run",
            file=out,
        )
        return code
    try:
        if options.master:
            outcome = locustrun.run_master(
                context=context,
                bind_host=options.master_bind_host,
                bind_port=options.master_port,
                expect_workers=options.expect_workers,
                users=users,
                spawn_rate=spawn_rate,
                run_time_s=run_time_s,
                output=output,
            )
        else:
            # Evidence of an earlier local run would be mistaken for this one's.
            shutil.rmtree(output / "evidence", ignore_errors=True)
            outcome = locustrun.run_local(
                context=context,
                pool_factory=pool,
                users=users,
                spawn_rate=spawn_rate,
                run_time_s=run_time_s,
                output=output,
            )
    except locustrun.LoadProblem as exc:
        raise LoadUsage(str(exc)) from None
    return _report(
        options=options,
        context=context,
        outcome=outcome,
        label=label,
        run_time_s=run_time_s,
        output=output,
        out=out,
    )


def _report(
    *,
    options: LoadOptions,
    context: Any,
    outcome: Any,
    label: str,
    run_time_s: float,
    output: Path,
    out: TextIO,
) -> int:
    from conformance.load import locustrun
    from conformance.load import output as report

    requests = report.request_stats(outcome.environment)
    iterations = sum(int(p.get("iterations", 0)) for p in outcome.processes)
    conformance = report.conformance_section(outcome.tally.as_dict(), iterations)
    thresholds = Thresholds(options.max_p95_ms, options.min_rps, options.max_error_rate)
    rows, status, reason = report.evaluate(requests, conformance, thresholds)
    if outcome.missing_workers:
        status = EXIT_CONFIG
        reason = f"{outcome.missing_workers} worker(s) never reported their checks"
    problems = list(context.problems)
    for process in outcome.processes:
        problems.extend(f"{process['id']}: {p}" for p in process.get("problems", []))
    doc = report.document(
        settings={
            "scenario": options.scenario,
            "users": options.users,
            "spawn_rate": options.spawn_rate or float(options.users),
            "run_time_s": run_time_s,
            "check_sample": options.check_sample,
            "iterations_per_user": options.iterations,
            "checkers_per_process": options.checkers,
            "max_pending": options.max_pending,
            "expect_workers": options.expect_workers if options.master else 0,
        },
        target={
            "base_url": context.target.target.base_url,
            "label": label,
            "target_file": str(context.target.path),
        },
        mode=outcome.mode,
        duration_s=outcome.duration_s,
        checks_done_s=outcome.checks_done_s,
        requests=requests,
        conformance=conformance,
        processes=outcome.processes,
        thresholds=rows,
        exit_status=status,
        reason=reason,
        problems=list(dict.fromkeys(problems)),
    )
    report.write_load_json(output / "load.json", doc)
    report.write_load_html(output / "load.html", doc)
    locustrun.write_locust_html(outcome.environment, output / "locust.html")
    report.print_summary(doc, output, out)
    return status
