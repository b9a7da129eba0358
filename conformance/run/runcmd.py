"""``kms-conformance run | list | coverage``: the catalogue against a target (explain.py: explain).

``run`` without ``--target`` starts the reference KMS in its own process (the harness
never imports ``refkms``) on loopback over HTTPS with a fresh state directory, waits for
the ``target.toml`` it writes once it listens, runs the catalogue through the pytest
plugin and stops it again. Exit statuses are those of DESIGN.md section 3.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from conformance.catalogue.cases import Case, CaseFileError, catalogue_dir, load_catalogue, select
from conformance.catalogue.requirements import load_requirements
from conformance.catalogue.waivers import WaiverFileError, load_waivers
from conformance.checks import REGISTRY
from conformance.profiles import ProfileError, get_profile
from conformance.run.explain import explain  # noqa: F401 (runcmd.explain is reached by name)
from conformance.target.file import Target, TargetFileError, load_target
from conformance.verdicts.outcomes import Verdict
from conformance.verdicts.results import RequirementInfo, RunResult

EXIT_OK, EXIT_FAIL, EXIT_CONFIG, EXIT_INCONC = 0, 1, 2, 3

EMBEDDED_START_TIMEOUT_S = 60.0


class UsageProblem(Exception):
    """Something the user gave cannot be used: exit 2 with this one-line message."""


@dataclass
class RunOptions:
    target: str | None = None
    output: str = "reports/latest"
    cases: Sequence[str] = ()
    strict: bool = False
    faults: Sequence[str] = ()
    workers: int = 0
    embedded_profile: str | None = None
    embedded_config: str | None = None
    quiet: bool = False
    waivers: str | None = None


def run(options: RunOptions, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    try:
        catalogue = load_catalogue()
        chosen = select(catalogue, options.cases)
        if not chosen:
            raise UsageProblem(f"no case matches {' '.join(options.cases)}")
        if options.target and options.faults:
            raise UsageProblem("--embedded-fault needs the embedded reference KMS (no --target)")
        if options.waivers:  # a bad waiver file is exit 2 before the KMS starts
            load_waivers(Path(options.waivers))
        self_test = bool(options.faults) and not options.strict
        if self_test:
            # A self-test: the question is whether the harness catches the fault, and a
            # warning from a should-strength or inferred rule is a catch (DESIGN.md 3).
            options.strict = True
        with _target_file(options, err) as (target_path, label):
            if self_test:
                print(
                    "kms-conformance run: --embedded-fault is a self-test of the harness; "
                    "warnings count as failures (as with --strict)",
                    file=err,
                )
            target = load_target(target_path)
            try:
                get_profile(target.profile.release)
            except ProfileError as exc:
                raise UsageProblem(f"{target_path}: profile.release: {exc}") from None
            _preflight(target)
            code = _run_pytest(options, target_path, chosen, catalogue, label)
            run_result = _last_run()
    except (UsageProblem, CaseFileError, TargetFileError, ProfileError, WaiverFileError) as exc:
        print(f"kms-conformance run: {exc}", file=err)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("kms-conformance run: interrupted", file=err)
        return EXIT_CONFIG
    if run_result is None:
        print(
            f"kms-conformance run: the test session did not finish (pytest exit {code})", file=err
        )
        return EXIT_CONFIG
    _summary(run_result, Path(options.output), out)
    if run_result.waivers is not None:
        from conformance.catalogue.waivers import expiry_warnings

        for line in expiry_warnings(run_result):
            print(line, file=err)
    if code == int(pytest_exit_code("INTERRUPTED")):
        ran = len(run_result.cases)
        print(
            f"kms-conformance run: interrupted after {ran} case(s); the reports in "
            f"{options.output} cover only those",
            file=err,
        )
        return EXIT_CONFIG
    return exit_status(run_result)


def pytest_exit_code(name: str) -> int:
    import pytest

    return int(getattr(pytest.ExitCode, name))


def exit_status(run_result: RunResult) -> int:
    verdicts = {case.verdict for case in run_result.cases if not case.waived}
    ran = [c for c in run_result.cases if c.verdict is not Verdict.NA]
    if not ran or Verdict.ERROR in verdicts:
        return EXIT_CONFIG
    unexpected = any(c.waiver and c.waiver["status"] == "unexpected pass" for c in run_result.cases)
    if Verdict.FAIL in verdicts or unexpected:  # a waived case that passed fails the run
        return EXIT_FAIL
    if Verdict.INCONC in verdicts:
        return EXIT_INCONC
    return EXIT_OK


@contextlib.contextmanager
def _target_file(options: RunOptions, err: TextIO) -> Iterator[tuple[Path, str]]:
    if options.target:
        path = Path(options.target)
        if not path.is_file():
            raise UsageProblem(f"{path}: target file not found")
        yield path, ""
        return
    with embedded_kms(
        options.faults,
        options.embedded_profile,
        options.embedded_config,
        err,
        while_starting=_warm_up,
        stoppers=_KMS_STOPPERS,
    ) as (path, label):
        try:
            yield path, label
        finally:
            _KMS_STOPPERS.clear()


# Asks the embedded reference KMS to stop; the plugin calls it once every case has run.
_KMS_STOPPERS: list[Callable[[], None]] = []


def _warm_up() -> None:
    """What the run imports anyway (pytest, its plugins, the reporters), imported while
    the reference KMS starts in its own process on the other core."""
    import importlib

    for name in ("pytest", "conformance.run.plugin", "conformance.report", "allure_pytest.plugin"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


@contextlib.contextmanager
def embedded_kms(
    faults: Sequence[str],
    profile: str | None = None,
    config: str | None = None,
    err: TextIO = sys.stderr,
    users: int = 0,
    *,
    while_starting: Callable[[], None] | None = None,
    stoppers: list[Callable[[], None]] | None = None,
) -> Iterator[tuple[Path, str]]:
    """Start ``python -m refkms serve`` with a fresh state directory; yield its target file.

    ``users``: also provision the UEs ue1..ueN (``serve --users``, for ``load``).
    ``while_starting`` runs after the process started and before waiting for it; a
    function that asks the KMS to stop (without waiting) is appended to ``stoppers``, for
    a caller that knows when it is no longer needed. It is stopped on leaving anyway."""
    state = Path(tempfile.mkdtemp(prefix="kms-conformance-refkms-"))
    try:
        config = _config_for_faults(faults, config, state, err)
    except UsageProblem:
        shutil.rmtree(state, ignore_errors=True)
        raise
    argv = [sys.executable, "-m", "refkms", "serve", "--state", str(state), "--port", "0"]
    argv += ["--users", str(users)] if users else []
    argv += ["--profile", profile] if profile else []
    argv += ["--config", config] if config else []
    for name in faults:
        argv += ["--fault", name]
    log = (state / "refkms.log").open("wb")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if stoppers is not None:
        stoppers.append(process.terminate)
    try:
        if while_starting is not None:
            while_starting()
        target = state / "target.toml"
        deadline = time.monotonic() + EMBEDDED_START_TIMEOUT_S
        while not target.is_file():
            if process.poll() is not None:
                log.flush()
                last = _last_line(state / "refkms.log")
                raise UsageProblem(f"the reference KMS did not start: {last}")
            if time.monotonic() > deadline:
                raise UsageProblem(
                    "the reference KMS wrote no target file within "
                    f"{EMBEDDED_START_TIMEOUT_S:.0f} s"
                )
            time.sleep(0.01)
        label = "embedded reference KMS" + (f" with fault {', '.join(faults)}" if faults else "")
        yield target, label
    finally:
        # A throwaway KMS whose state is deleted next: it need not shut down gracefully
        # (uvicorn's clean stop takes a quarter of a second, the run's last).
        process.kill()
        process.wait()
        log.close()
        shutil.rmtree(state, ignore_errors=True)


def _config_for_faults(
    faults: Sequence[str], config: str | None, state: Path, err: TextIO
) -> str | None:
    """The embedded KMS's configuration file: the user's, with what the faults need laid
    over it (an encryption fault needs encrypted responses to be seen at all)."""
    if not faults:
        return config
    from conformance.run.embedded_config import (
        EmbeddedConfigError,
        fault_catalogue,
        fault_settings,
        write_config,
    )

    try:
        settings = fault_settings(faults, fault_catalogue())
        path, changes = write_config(settings, config, state)
    except EmbeddedConfigError as exc:
        raise UsageProblem(str(exc)) from None
    if changes:
        print(
            f"kms-conformance run: the embedded KMS runs with {', '.join(changes)}, "
            f"which fault {', '.join(faults)} needs",
            file=err,
        )
    return str(path) if path else None


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no output)"
    return lines[-1].strip() if lines else "(no output)"


def _preflight(target: Target) -> None:
    """A misconfigured target (unreachable, TLS, 404 base path, valid token refused) is
    exit 2 with one line, not a fail for every case (conformance/run/preflight.py)."""
    from conformance.run.preflight import TargetMisconfigured, preflight

    try:
        preflight(target)
    except TargetMisconfigured as exc:
        raise UsageProblem(str(exc)) from None


def _run_pytest(
    options: RunOptions, target_path: Path, chosen: list[Case], catalogue: list[Case], label: str
) -> int:
    import pytest

    from conformance.run import plugin

    plugin.LAST["run"] = None
    plugin.CASES_DONE[:] = _KMS_STOPPERS
    output = Path(options.output)
    output.mkdir(parents=True, exist_ok=True)
    # The previous run's evidence and Allure results (thousands of files) are renamed out
    # of the way at once and deleted while this run goes on.
    cleaners = [_set_aside(output / "evidence"), _set_aside(output / "allure-results")]
    args = [
        str(catalogue_dir()),
        "-p",
        "conformance.run.plugin",
        "-p",
        "no:cacheprovider",
        "-c",
        os.devnull,
        "--rootdir",
        str(catalogue_dir()),
        "--kms-target",
        str(target_path),
        "--kms-output",
        str(output),
        "--kms-label",
        label,
        "--alluredir",
        str(output / "allure-results"),
        "--clean-alluredir",
        "-q",
        "--no-header",
        "-p",
        "no:warnings",
        # Only the plugins a run uses: installed ones (xdist, anyio, hypothesis, locust's,
        # timeout) would each be imported, some rewritten, and hypothesis's imports
        # hypothesis at the end of every session (about 2.5 s); cases use none of them.
        "--disable-plugin-autoload",
        "-p",
        "allure_pytest.plugin",
        # Case items hold no assert statements to rewrite; plain asserts spare the import
        # hook that re-compiles every plugin module it loads.
        "--assert=plain",
        # Its clean-up runs gc.collect() over the whole run's results (~0.2 s); case items
        # raise no unraisable exceptions worth reporting.
        "-p",
        "no:unraisableexception",
    ]
    if options.strict:
        args.append("--kms-strict")
    if len(chosen) != len(catalogue):
        args += ["--kms-cases", ",".join(c.id for c in chosen)]
    _write_campaign(options, output, chosen, len(catalogue))
    if options.waivers:
        args += ["--kms-waivers", str(options.waivers)]
    if options.workers and options.workers > 1:
        # N concurrent lanes in this process (conformance/run/lanes.py), not N pytest-xdist
        # interpreters that would each import and compile everything again.
        args += ["--kms-threads", str(options.workers)]
    if options.quiet:
        args += ["-qq"]
    # What is alive now (modules, the catalogue, schemas) lives for the whole run: out of
    # the collector's way, so its full collections only walk what the run creates.
    gc.freeze()
    try:
        return int(pytest.main(args))
    finally:
        gc.unfreeze()
        plugin.CASES_DONE.clear()
        for cleaner in cleaners:
            if cleaner is not None:
                cleaner.join()


def _set_aside(path: Path) -> threading.Thread | None:
    """Rename ``path`` to a hidden sibling and delete that in a thread (None: no path)."""
    if not path.exists():
        return None
    aside = Path(tempfile.mkdtemp(prefix=f".{path.name}-old-", dir=path.parent))
    try:
        os.replace(path, aside / path.name)
    except OSError:
        shutil.rmtree(aside, ignore_errors=True)
        shutil.rmtree(path, ignore_errors=True)
        return None
    # Deleting files is system calls, which release the GIL: the run goes on meanwhile.
    cleaner = threading.Thread(
        target=shutil.rmtree, args=(aside,), kwargs={"ignore_errors": True}, daemon=True
    )
    cleaner.start()
    return cleaner


def _write_campaign(options: RunOptions, output: Path, chosen: list[Case], total: int) -> None:
    """campaign.json: what this run set out to do (read by ``bundle`` and the PDF report),
    and a copy of the waiver file, so the output folder says which waivers were used."""
    waivers = output / "waivers.toml"
    waivers.unlink(missing_ok=True)
    (output / "report.pdf").unlink(missing_ok=True)  # made by `report --pdf` for one run
    if options.waivers:
        shutil.copyfile(options.waivers, waivers)
    campaign = {
        "selected": [c.id for c in chosen],
        "catalogue_cases": total,
        "patterns": list(options.cases),
        "strict": options.strict,
        "embedded_faults": list(options.faults),
        "waivers": "waivers.toml" if options.waivers else None,
    }
    (output / "campaign.json").write_text(json.dumps(campaign, indent=2) + "\n", encoding="utf-8")


def _last_run() -> RunResult | None:
    from conformance.run import plugin

    run = plugin.LAST["run"]
    return run if isinstance(run, RunResult) else None


def _summary(run: RunResult, output: Path, out: TextIO) -> None:
    counts = run.summary()
    order = ("pass", "fail", "inconc", "n/a", "error")
    print("", file=out)
    print(
        f"kms-conformance: {len(run.cases)} cases in {run.duration_s:.1f} s against "
        f"{run.target.get('label') or run.target.get('base_url')} (profile {run.profile})",
        file=out,
    )
    print(
        "  " + ", ".join(f"{counts[v]} {v}" for v in order) + f", {counts['warnings']} warnings",
        file=out,
    )
    bad = [
        c
        for c in run.cases
        if c.verdict in (Verdict.FAIL, Verdict.ERROR, Verdict.INCONC) and not c.waived
    ]
    for case in bad:
        print(f"  {case.verdict.value.upper():6} {case.id}: {case.reason}", file=out)
    if run.waivers is not None:
        from conformance.catalogue.waivers import summary_lines

        print(f"  {counts['waived']} waived, {counts['unexpected_pass']} unexpected pass", file=out)
        for line in summary_lines(run):
            print(line, file=out)
    warned = [c for c in run.cases if c.verdict is Verdict.PASS and c.warnings]
    for case in warned[:20]:
        print(f"  WARN   {case.id}: {case.reason.removeprefix('warning: ')}", file=out)
    if len(warned) > 20:
        print(f"  ... and {len(warned) - 20} more cases with warnings (see report.html)", file=out)
    if warned and not run.strict:
        print(
            "  (warnings are should-strength or inferred rules; --strict makes them fail)", file=out
        )
    print(f"  reports: {output}/ (report.html, results.json, junit.xml, evidence/)", file=out)


# -- list / explain / coverage ---------------------------------------------------------


def list_cases(as_json: bool, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    try:
        cases = load_catalogue()
    except CaseFileError as exc:
        print(f"kms-conformance list: {exc}", file=err)
        return EXIT_CONFIG
    if as_json:
        rows = [
            {
                "id": c.id,
                "title": c.title,
                "area": c.area,
                "reqs": list(c.reqs),
                "clause": c.clause,
                "pics": c.pics,
                "request_types": list(c.request_types),
            }
            for c in cases
        ]
        json.dump(rows, out, indent=2)
        out.write("\n")
        return EXIT_OK
    for c in cases:
        pics = "" if c.pics == "true" else f"  [PICS {c.pics}]"
        print(f"{c.id:28} {','.join(c.reqs):22} {c.clause:24} {c.title}{pics}", file=out)
    print(f"{len(cases)} cases", file=out)
    return EXIT_OK


def coverage_markdown(cases: Sequence[Case]) -> str:
    """testcases/COVERAGE.md: REQ id -> cases, and the untestable ones with the reason."""
    requirements = load_requirements()
    by_req: dict[str, list[str]] = {}
    for case in cases:
        for req_id in case.reqs:
            by_req.setdefault(req_id, []).append(case.id)
        for name in case.check_names:
            for req_id in REGISTRY[name].reqs:
                by_req.setdefault(req_id, [])
                if case.id not in by_req[req_id]:
                    by_req[req_id].append(case.id)
    lines = [
        "# Requirement coverage of the case catalogue",
        "",
        "Generated by `kms-conformance coverage --write` from testcases/*.yaml and",
        "testcases/requirements.yaml; do not edit by hand.",
        "",
        f"{len(cases)} cases; {len(requirements)} requirements.",
        "",
        "| REQ | Clause | Strength | Cases |",
        "|---|---|---|---|",
    ]
    untested: list[RequirementInfo] = []
    not_probe: list[RequirementInfo] = []
    for req in requirements:
        if not req.probe_testable:
            not_probe.append(req)
            continue
        ids = by_req.get(req.id, [])
        if not ids:
            untested.append(req)
        lines.append(
            f"| {req.id} | {req.clause} | {req.strength} | {', '.join(ids) or '**none**'} |"
        )
    lines += ["", "## Not testable by a black-box probe of a KMS", ""]
    lines += [f"- {r.id} ({r.clause}): {r.title}. {r.untestable_reason}" for r in not_probe]
    lines += ["", "## Probe-testable but without a case", ""]
    lines += [f"- {r.id}: {r.title}" for r in untested] or ["None."]
    return "\n".join(lines) + "\n"


def coverage(write: bool, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    try:
        text = coverage_markdown(load_catalogue())
    except CaseFileError as exc:
        print(f"kms-conformance coverage: {exc}", file=err)
        return EXIT_CONFIG
    if write:
        path = catalogue_dir() / "COVERAGE.md"
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}", file=out)
    else:
        out.write(text)
    return EXIT_OK
