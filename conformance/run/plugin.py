"""The pytest plugin: each YAML case becomes a pytest item (DESIGN.md 1, issue 4 item 7).

Load it with ``-p conformance.run.plugin`` and give a target file; pytest's ``-k``, markers
and pytest-xdist then work on cases:

    pytest -p conformance.run.plugin --kms-target target.toml testcases/ -k KEYPROV -n 2

Verdicts map to pytest outcomes: pass -> passed, fail -> failed, n/a -> skipped with the
reason, inconc -> xfailed ("inconc: ..."), error -> an error in setup. Each item carries
the case id, REQ ids, clause and verdict as user properties (JUnit properties). The
controlling process gathers every case result (also from xdist workers) and writes the
reports into ``--kms-output`` when the session ends.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conformance import __version__
from conformance.catalogue.cases import (
    Case,
    CaseFileError,
    catalogue_dir,
    load_catalogue,
    load_file,
)
from conformance.catalogue.requirements import load_requirements
from conformance.profiles import get_profile
from conformance.run.engine import Runner, collect_secrets
from conformance.run.lanes import CaseLanes, start_lanes
from conformance.target.file import Target, load_target
from conformance.verdicts.outcomes import Outcome, Verdict
from conformance.verdicts.results import CaseResult, RunResult, case_from_wire, case_to_wire

_RUNNER_KEY = pytest.StashKey[Runner]()
_LANES_KEY = pytest.StashKey[CaseLanes]()
_LANE_RUNNERS_KEY = pytest.StashKey[list[Runner]]()
_RESULTS_KEY = pytest.StashKey[dict[str, CaseResult]]()
_STARTED_KEY = pytest.StashKey[tuple[datetime, float]]()
_WAIVERS_KEY = pytest.StashKey[list[Any]]()
_DIRS_KEY = pytest.StashKey[dict[str, str]]()
_STAGING_KEY = pytest.StashKey[Path]()
_SPILL_KEY = pytest.StashKey[tuple[Any, Any]]()  # (Redactor, EvidenceBudget), made once
_WIRE = "kms_case"
_STAGING_INPUT = "kms_evidence_staging"

# The last finished run in this process (the CLI reads it after pytest.main returns).
LAST: dict[str, Any] = {"run": None, "reports": {}}
# Called once every case has run, before the reports are written: the run command stops
# the embedded reference KMS there, so its shutdown overlaps with writing the reports.
CASES_DONE: list[Callable[[], None]] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kms-conformance")
    group.addoption("--kms-target", metavar="FILE", help="the target file (PICS/PIXIT, TOML)")
    group.addoption("--kms-output", metavar="DIR", help="write the reports into DIR")
    group.addoption("--kms-strict", action="store_true", help="warnings fail the case")
    group.addoption("--kms-label", default="", help="what the target is, for the report")
    group.addoption("--kms-cases", default="", help="comma-separated case ids to run")
    group.addoption("--kms-waivers", metavar="FILE", help="known deviations (waiver TOML)")
    group.addoption(
        "--kms-threads",
        type=int,
        default=1,
        metavar="N",
        help="run the cases in N concurrent lanes, forked processes on Linux, else threads "
        "(kms-conformance run -n N)",
    )


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected what they do
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _active(config):
        return
    wanted = {i for i in str(config.getoption("--kms-cases", default="") or "").split(",") if i}
    if wanted:
        keep = [i for i in items if not isinstance(i, CaseItem) or i.case.id in wanted]
        dropped = [i for i in items if i not in keep]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = keep
    # Every process (xdist workers too) collects the same items: the same folder names.
    from conformance.report.evidence import case_dirs

    config.stash[_DIRS_KEY] = case_dirs(i.case.id for i in items if isinstance(i, CaseItem))


def _active(config: pytest.Config) -> bool:
    return bool(config.getoption("--kms-target", default=None))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if not _active(config):
        return
    if getattr(config.option, "dist", None) == "load":
        # pytest-xdist: keep each serial group (FORMAT.md, "Concurrency") in one worker.
        config.option.dist = "loadgroup"
    config.stash[_RESULTS_KEY] = {}
    config.stash[_STARTED_KEY] = (datetime.now(UTC), time.monotonic())
    waiver_file = config.getoption("--kms-waivers", default=None)
    if waiver_file:  # a bad waiver file stops the session before any case runs
        from conformance.catalogue.waivers import WaiverFileError, load_waivers

        try:
            config.stash[_WAIVERS_KEY] = load_waivers(Path(waiver_file))
        except WaiverFileError as exc:
            raise pytest.UsageError(str(exc)) from None
    config.addinivalue_line("markers", "kms_area(name): the area of a KMS conformance case")
    config.addinivalue_line(
        "markers", "kms_changes_state: the case changes what the KMS holds (runs alone)"
    )
    # Each case's evidence is written as it ends, into one folder every process shares
    # (renamed to evidence/ when the session ends), so its bodies need not stay in memory.
    workerinput = getattr(config, "workerinput", None)
    output = config.getoption("--kms-output")
    if workerinput is not None and workerinput.get(_STAGING_INPUT):
        config.stash[_STAGING_KEY] = Path(workerinput[_STAGING_INPUT])
    elif workerinput is None and output:
        Path(output).mkdir(parents=True, exist_ok=True)
        config.stash[_STAGING_KEY] = Path(tempfile.mkdtemp(prefix=".evidence-", dir=output))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: tell a worker where the run's evidence goes."""
    staging = node.config.stash.get(_STAGING_KEY, None)
    if staging is not None:
        node.workerinput[_STAGING_INPUT] = str(staging)


def _spill(config: pytest.Config, result: CaseResult) -> None:
    """Write the case's evidence now and keep only excerpts and digests of its bodies."""
    staging = config.stash.get(_STAGING_KEY, None)
    if staging is None or result.evidence_written:
        return
    from conformance.report.evidence import safe_name, spill_case

    redactor, budget = _spill_tools(config)
    name = config.stash.get(_DIRS_KEY, {}).get(result.id) or safe_name(result.id)
    spill_case(result, staging / name, redactor, budget)


def _spill_tools(config: pytest.Config) -> tuple[Any, Any]:
    """The run's redactor and evidence budget, made once per process."""
    if _SPILL_KEY not in config.stash:
        from conformance.report import Redactor
        from conformance.report.evidence import LEDGER_NAME, EvidenceBudget

        staging = config.stash[_STAGING_KEY]
        target = _target(config)
        budget = EvidenceBudget(target.limits.max_evidence_bytes, staging / LEDGER_NAME)
        config.stash[_SPILL_KEY] = (Redactor(collect_secrets(target)), budget)
    return config.stash[_SPILL_KEY]


def _target(config: pytest.Config) -> Target:
    cached = getattr(config, "_kms_target", None)
    if cached is None:
        cached = load_target(Path(config.getoption("--kms-target")))
        config._kms_target = cached  # type: ignore[attr-defined]
    return cached


# pytest-xdist has no barrier: a case with ``changes_state: true`` would run while other
# workers run other cases, which could then see a user's state change under them
# (FORMAT.md, "Concurrency"). In a worker such a case sends nothing and is an error.
_XDIST_STATE_CHANGES = (
    "the case changes the KMS's state and must run alone, which pytest-xdist (-n) cannot "
    "ensure: run it with kms-conformance run -n N or without -n (deselect such cases with "
    "-m 'not kms_changes_state')"
)


def _runner(config: pytest.Config) -> Runner:
    if _RUNNER_KEY not in config.stash:
        target = _target(config)
        config.stash[_RUNNER_KEY] = Runner(
            target,
            get_profile(target.profile.release),
            strict=bool(config.getoption("--kms-strict")),
            refuse_state_changes=_XDIST_STATE_CHANGES if hasattr(config, "workerinput") else "",
        )
    return config.stash[_RUNNER_KEY]


def pytest_collection_finish(session: pytest.Session) -> None:
    """With --kms-threads N > 1 (not in an xdist worker), start running the selected cases
    in N lanes; each item then takes its result (conformance/run/lanes.py)."""
    config = session.config
    threads = int(config.getoption("--kms-threads", default=1) or 1)
    if not _active(config) or hasattr(config, "workerinput"):
        return
    cases = [item.case for item in session.items if isinstance(item, CaseItem)]
    if threads <= 1 or len(cases) < 2:
        return
    from conformance.profiles import load_fast_schema

    target = _target(config)
    profile = get_profile(target.profile.release)
    load_fast_schema(profile)  # compiled once here, not by several lanes at once
    runners: list[Runner] = []
    config.stash[_LANE_RUNNERS_KEY] = runners

    if _STAGING_KEY in config.stash:
        _spill_tools(config)  # made once here, not by several lanes at once

    def new_runner() -> Any:
        runner = Runner(target, profile, strict=bool(config.getoption("--kms-strict")))
        runners.append(runner)

        def run_and_spill(case: Case) -> CaseResult:
            # Each lane writes its case's evidence as it ends and keeps only excerpts, so
            # results waiting for their pytest item hold no whole bodies.
            result = runner.run_case(case)
            _spill(config, result)
            return result

        # A lane process closes its runner when it ends (ForkLanes).
        run_and_spill.close = runner.close  # type: ignore[attr-defined]
        return run_and_spill

    config.stash[_LANES_KEY] = start_lanes(cases, threads, new_runner)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if not _active(parent.config):
        return None
    if file_path.suffix != ".yaml" or file_path.stem == "requirements":
        return None
    if file_path.parent.resolve() != catalogue_dir().resolve():
        return None
    return CaseFile.from_parent(parent, path=file_path)


class CaseFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        from conformance.catalogue.cases import _schema

        try:
            cases = load_file(self.path, _schema(self.path.parent))
        except CaseFileError as exc:
            raise pytest.UsageError(str(exc)) from None
        for case in cases:
            item = CaseItem.from_parent(self, name=case.id, case=case)
            item.add_marker(pytest.mark.kms_area(case.area))
            if case.changes_state:
                item.add_marker(pytest.mark.kms_changes_state)
            group = case.serial_group or ("kms-changes-state" if case.changes_state else "")
            if group:
                item.add_marker(pytest.mark.xdist_group(group))
            yield item


class CaseFailed(Exception):
    def __init__(self, result: CaseResult) -> None:
        super().__init__(result.reason)
        self.result = result


class CaseErrored(Exception):
    pass


class UnexpectedPass(Exception):
    """A waived case passed: the run fails so that the stale waiver is removed."""


def _waiver_status(config: pytest.Config, result: CaseResult) -> str | None:
    waivers = config.stash.get(_WAIVERS_KEY, None)
    if not waivers:
        return None
    from conformance.catalogue.waivers import decide

    target = _target(config)
    on = config.stash[_STARTED_KEY][0].date()
    decided = decide(result, waivers, target.profile.release, _pics_dict(target), on)
    return decided[1] if decided else None


class CaseItem(pytest.Item):
    def __init__(self, *, case: Case, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.result: CaseResult | None = None
        self.funcargs: dict[str, Any] = {}  # allure-pytest reads it

    def setup(self) -> None:
        lanes = self.config.stash.get(_LANES_KEY, None)
        if lanes is not None:
            result = lanes.result(self.case.id)  # a lane already wrote its evidence
        else:
            result = _runner(self.config).run_case(self.case)
        _spill(self.config, result)
        self.result = result
        self.user_properties.extend(
            [
                ("case_id", result.id),
                ("reqs", " ".join(result.reqs)),
                ("clause", self.case.clause),
                ("verdict", result.verdict.value),
            ]
        )
        _keep(self.config, self.nodeid, result)
        if result.verdict is Verdict.ERROR:
            _decorate(self.config, result)
            raise CaseErrored(result.reason)
        if result.verdict is Verdict.NA:
            _decorate(self.config, result)
            pytest.skip(f"n/a: {result.reason}")

    def runtest(self) -> None:
        result = self.result
        assert result is not None
        _decorate(self.config, result)
        status = _waiver_status(self.config, result)
        if status == "applied":  # a known deviation: pytest's own word for it is xfail
            self.user_properties.append(("waiver", status))
            pytest.xfail(f"fail (waived): {result.reason}")
        if status == "unexpected pass":
            self.user_properties.append(("waiver", status))
            raise UnexpectedPass(result.id)
        if result.verdict is Verdict.FAIL:
            raise CaseFailed(result)
        if result.verdict is Verdict.INCONC:
            pytest.xfail(f"inconc: {result.reason}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, CaseFailed):
            return _failure_text(excinfo.value.result)
        if isinstance(excinfo.value, CaseErrored):
            return f"error: {excinfo.value}"
        if isinstance(excinfo.value, UnexpectedPass):
            return "unexpected pass: the case is waived but passed; remove the waiver"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.case.line - 1, f"{self.case.id}: {self.case.title}"


def _failure_text(result: CaseResult) -> str:
    lines = [f"fail: {result.reason}"]
    for check in result.checks:
        if check.outcome is Outcome.VIOLATION:
            lines.append(f"  {check.name} [{', '.join(check.reqs)}]: {check.message}")
            if check.expected or check.observed:
                lines.append(f"    expected: {check.expected}")
                lines.append(f"    observed: {check.observed}")
    return "\n".join(lines)


def _decorate(config: pytest.Config, result: CaseResult) -> None:
    # Registered by its entry point's name, or by its module's (``kms-conformance run``
    # loads it with -p, plugin autoload off).
    manager = config.pluginmanager
    if not (manager.hasplugin("allure_pytest") or manager.hasplugin("allure_pytest.plugin")):
        return
    if not getattr(config.option, "allure_report_dir", None):
        return
    from conformance.report import Redactor
    from conformance.report.allure_support import decorate
    from conformance.report.redact import redacted_at_capture

    base = getattr(config, "_kms_redactor", None)
    if base is None:  # built once: the forms of every secret of the run
        base = Redactor(collect_secrets(_target(config)))
        config._kms_redactor = base  # type: ignore[attr-defined]
    clean = redacted_at_capture(result)
    redactor = base.extended(result.secrets) if result.secrets else base
    decorate(result, redactor.with_clean(clean) if clean else redactor)


# Case results travel to the controlling process outside the test reports (user
# properties end up in JUnit files); in this process they are kept as they are.
_collected: dict[str, str | CaseResult] = {}


def _keep(config: pytest.Config, nodeid: str, result: CaseResult) -> None:
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: sent to the controller when it ends
        workeroutput.setdefault(_WIRE, {})[nodeid] = json.dumps(case_to_wire(result))
    else:
        _collected[nodeid] = result


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist: a worker finished; take the case results it gathered."""
    output = getattr(node, "workeroutput", None) or {}
    _collected.update(output.get(_WIRE, {}))


def pytest_report_teststatus(
    report: pytest.TestReport, config: pytest.Config
) -> tuple[str, str, str] | None:
    if not _active(config):
        return None
    properties = dict(report.user_properties)
    verdict = properties.get("verdict")
    if verdict is None or report.when not in ("setup", "call"):
        return None
    if report.when == "call" and properties.get("waiver") == "applied":
        return "xfailed", "w", "WAIVED"
    if report.when == "call" and properties.get("waiver") == "unexpected pass":
        return "failed", "U", "UNEXPECTED PASS"
    if report.when == "setup" and verdict not in ("n/a", "error"):
        return None
    letters = {"pass": ".", "fail": "F", "n/a": "s", "inconc": "i", "error": "E"}
    categories = {
        "pass": "passed",
        "fail": "failed",
        "n/a": "skipped",
        "inconc": "xfailed",
        "error": "error",
    }
    return categories[str(verdict)], letters[str(verdict)], str(verdict).upper()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if not _active(config):
        return
    if _LANES_KEY in config.stash:
        config.stash[_LANES_KEY].close()
        for runner in config.stash[_LANE_RUNNERS_KEY]:
            runner.close()
    if _RUNNER_KEY in config.stash:
        config.stash[_RUNNER_KEY].close()
    if hasattr(config, "workerinput"):
        return  # an xdist worker: the controller gathers and writes
    for done in CASES_DONE:
        done()
    started, t0 = config.stash[_STARTED_KEY]
    order = {case.id: n for n, case in enumerate(_catalogue_order())}
    results = [
        v if isinstance(v, CaseResult) else case_from_wire(json.loads(v))
        for v in _collected.values()
    ]
    results.sort(key=lambda r: order.get(r.id, len(order)))
    _collected.clear()
    target = _target(config)
    run = RunResult(
        started=started,
        duration_s=time.monotonic() - t0,
        tool_version=__version__,
        target=describe_target(target, config.getoption("--kms-label")),
        profile=target.profile.release,
        pics=_pics_dict(target),
        cases=results,
        requirements=load_requirements(),
        strict=bool(config.getoption("--kms-strict")),
        secrets=collect_secrets(target),
        evidence_staging=config.stash.get(_STAGING_KEY, None),
        max_evidence_bytes=target.limits.max_evidence_bytes,
    )
    waiver_file = config.getoption("--kms-waivers", default=None)
    if waiver_file:
        from conformance.catalogue.waivers import apply_waivers, load_waivers

        apply_waivers(run, load_waivers(Path(waiver_file)), waiver_file)
    LAST["run"] = run
    output = config.getoption("--kms-output")
    if output:
        from conformance.report import write_reports

        LAST["reports"] = write_reports(run, Path(output))


def _catalogue_order() -> list[Case]:
    try:
        return load_catalogue()
    except CaseFileError:
        return []


def describe_target(target: Target, label: str = "") -> dict[str, Any]:
    """The target as reports show it: where and how it was reached, never a secret."""
    settings = target.target
    return {
        "base_url": settings.base_url,
        "verify_tls": settings.verify_tls,
        "ca_file": str(settings.ca_file) if settings.ca_file else None,
        "timeout_s": settings.timeout_s,
        "target_file": str(target.path),
        "users": [user.uri for user in target.users],
        "label": label,
        "limits": target.limits.public(),  # what the answers were allowed to cost
    }


def _pics_dict(target: Target) -> dict[str, Any]:
    from conformance.catalogue.cases import pics_values

    values = pics_values(target)
    values.pop("release", None)
    return values
