"""The pytest plugin: each YAML case becomes a pytest item (DESIGN.md 1, issue 4 item 7).

Load it with ``-p conformance.plugin`` and give a target file; pytest's ``-k``, markers
and pytest-xdist then work on cases:

    pytest -p conformance.plugin --kms-target target.toml testcases/ -k KEYPROV -n 2

Verdicts map to pytest outcomes: pass -> passed, fail -> failed, n/a -> skipped with the
reason, inconc -> xfailed ("inconc: ..."), error -> an error in setup. Each item carries
the case id, REQ ids, clause and verdict as user properties (JUnit properties). The
controlling process gathers every case result (also from xdist workers) and writes the
reports into ``--kms-output`` when the session ends.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conformance import __version__
from conformance.cases import Case, CaseFileError, catalogue_dir, load_catalogue, load_file
from conformance.engine import Runner, collect_secrets
from conformance.lanes import Lanes
from conformance.profiles import get_profile
from conformance.report.stage import EvidenceStage
from conformance.requirements import load_requirements
from conformance.results import CaseResult, RunResult, case_from_wire, case_to_wire
from conformance.target import Target, load_target
from conformance.verdicts import Outcome, Verdict

_RUNNER_KEY = pytest.StashKey[Runner]()
_LANES_KEY = pytest.StashKey[Lanes]()
_LANE_RUNNERS_KEY = pytest.StashKey[list[Runner]]()
_STAGE_KEY = pytest.StashKey[EvidenceStage]()
_RESULTS_KEY = pytest.StashKey[dict[str, CaseResult]]()
_STARTED_KEY = pytest.StashKey[tuple[datetime, float]]()
_WIRE = "kms_case"

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
    group.addoption(
        "--kms-threads",
        type=int,
        default=1,
        metavar="N",
        help="run the cases in N concurrent lanes in this process (kms-conformance run -n N)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = {i for i in str(config.getoption("--kms-cases", default="") or "").split(",") if i}
    if not _active(config) or not wanted:
        return
    keep = [i for i in items if not isinstance(i, CaseItem) or i.case.id in wanted]
    dropped = [i for i in items if i not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


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
    config.addinivalue_line("markers", "kms_area(name): the area of a KMS conformance case")


def _target(config: pytest.Config) -> Target:
    cached = getattr(config, "_kms_target", None)
    if cached is None:
        cached = load_target(Path(config.getoption("--kms-target")))
        config._kms_target = cached  # type: ignore[attr-defined]
    return cached


def _runner(config: pytest.Config) -> Runner:
    if _RUNNER_KEY not in config.stash:
        target = _target(config)
        config.stash[_RUNNER_KEY] = Runner(
            target,
            get_profile(target.profile.release),
            strict=bool(config.getoption("--kms-strict")),
        )
    return config.stash[_RUNNER_KEY]


def pytest_collection_finish(session: pytest.Session) -> None:
    """With --kms-threads N > 1 (not in an xdist worker), start running the selected cases
    in N lanes; each item then takes its result (conformance/lanes.py)."""
    config = session.config
    threads = int(config.getoption("--kms-threads", default=1) or 1)
    if not _active(config) or hasattr(config, "workerinput"):
        return
    cases = [item.case for item in session.items if isinstance(item, CaseItem)]
    output = config.getoption("--kms-output")
    if output and not hasattr(config, "workerinput"):
        # Evidence files are created while the cases run (a thread, mostly kernel time).
        config.stash[_STAGE_KEY] = EvidenceStage(
            Path(output), _catalogue_ordered(cases), collect_secrets(_target(config))
        )
    if threads <= 1 or len(cases) < 2:
        return
    from conformance.profiles import load_fast_schema

    target = _target(config)
    profile = get_profile(target.profile.release)
    load_fast_schema(profile)  # compiled once here, not by several lanes at once
    runners: list[Runner] = []
    config.stash[_LANE_RUNNERS_KEY] = runners

    def new_runner() -> Any:
        runner = Runner(target, profile, strict=bool(config.getoption("--kms-strict")))
        runners.append(runner)
        return runner.run_case

    config.stash[_LANES_KEY] = Lanes(cases, threads, new_runner)


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
        from conformance.cases import _schema

        try:
            cases = load_file(self.path, _schema(self.path.parent))
        except CaseFileError as exc:
            raise pytest.UsageError(str(exc)) from None
        for case in cases:
            item = CaseItem.from_parent(self, name=case.id, case=case)
            item.add_marker(pytest.mark.kms_area(case.area))
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


class CaseItem(pytest.Item):
    def __init__(self, *, case: Case, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.result: CaseResult | None = None
        self.funcargs: dict[str, Any] = {}  # allure-pytest reads it

    def setup(self) -> None:
        lanes = self.config.stash.get(_LANES_KEY, None)
        if lanes is not None:
            result = lanes.result(self.case.id)
        else:
            result = _runner(self.config).run_case(self.case)
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
        if result.verdict is Verdict.FAIL:
            raise CaseFailed(result)
        if result.verdict is Verdict.INCONC:
            pytest.xfail(f"inconc: {result.reason}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, CaseFailed):
            return _failure_text(excinfo.value.result)
        if isinstance(excinfo.value, CaseErrored):
            return f"error: {excinfo.value}"
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
    if not config.pluginmanager.hasplugin("allure_pytest"):
        return
    if not getattr(config.option, "allure_report_dir", None):
        return
    from conformance.report import Redactor
    from conformance.report.allure_support import decorate

    base = getattr(config, "_kms_redactor", None)
    if base is None:  # built once: the forms of every secret of the run
        base = Redactor(collect_secrets(_target(config)))
        config._kms_redactor = base  # type: ignore[attr-defined]
    clean = [
        body
        for step in result.steps
        if step.redacted
        for body in (step.exchange.body, step.exchange.request.body, step.plaintext or b"")
    ]
    decorate(result, base.with_clean(clean) if clean else base)


# Case results travel to the controlling process outside the test reports (user
# properties end up in JUnit files); in this process they are kept as they are.
_collected: dict[str, str | CaseResult] = {}


def _keep(config: pytest.Config, nodeid: str, result: CaseResult) -> None:
    stage = config.stash.get(_STAGE_KEY, None)
    if stage is not None:
        stage.add(result)
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
    verdict = dict(report.user_properties).get("verdict")
    if verdict is None or report.when not in ("setup", "call"):
        return None
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
    )
    LAST["run"] = run
    output = config.getoption("--kms-output")
    if output:
        from conformance.report import write_reports

        LAST["reports"] = write_reports(run, Path(output), config.stash.get(_STAGE_KEY, None))


def _catalogue_ordered(cases: list[Case]) -> list[str]:
    """The ids of ``cases`` in the order the run's results are sorted in."""
    order = {case.id: n for n, case in enumerate(_catalogue_order())}
    return sorted((case.id for case in cases), key=lambda i: order.get(i, len(order)))


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
    }


def _pics_dict(target: Target) -> dict[str, Any]:
    from conformance.cases import pics_values

    values = pics_values(target)
    values.pop("release", None)
    return values
