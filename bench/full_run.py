"""Where a full run's time goes (issues 7 and 15); prints a Markdown section.

1. Wall time of ``kms-conformance run`` against the embedded reference KMS, as a user
   starts it (a subprocess; median of three), serially and with ``-n 2`` (two concurrent
   lanes, forked processes, conformance/run/lanes.py), with the CPU time of each.
2. Serial runs in this process, one with CPU-time charging of the harness's entry points
   (crypto, XML parsing and schema validation, HTTP and TLS, checks, reports with
   redaction, evidence and the Allure files; the rest is pytest, start-up and glue), user
   and system time apart (system time is mostly the file system creating files).
3. The cost of checking against the cost of asking: the harness's CPU time over the
   reference KMS's CPU time for the same exchanges (the KMS runs in a child process; its
   CPU time is the children's rusage once it has been reaped).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "conformance.run.cli", "run"]
RUNS = 3
TARGET_S = 4.0  # issue 15 (issue 7 asked for 30 s)
TARGET_SPEEDUP = 1.3  # issue 15, -n 2 on loopback
TARGET_REPORT_SHARE = 0.10  # issue 15: reports, evidence and Allure of the harness's CPU
REPORTS = "reports, evidence, Allure (with redaction)"
# Outputs go where a user's do (the working tree, reports/), not to /tmp: on some machines
# creating files in /tmp costs several times more system time.
OUT_BASE = ROOT / "reports"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wall(extra: list[str], problems: list[str]) -> tuple[float, int, float]:
    """Median wall time, worst exit status, median CPU time (harness and KMS processes)."""
    times = []
    cpus = []
    code = 0
    OUT_BASE.mkdir(exist_ok=True)
    for _ in range(RUNS):
        with tempfile.TemporaryDirectory(prefix="bench-", dir=OUT_BASE) as out:
            cpu0 = _children_cpu()
            started = time.perf_counter()
            done = subprocess.run([*CLI, "--output", out, *extra], capture_output=True, cwd=ROOT)
            times.append(time.perf_counter() - started)
            cpus.append(_children_cpu() - cpu0)
            code = code or done.returncode
            if done.returncode:
                problems += _not_passed(Path(out), done.stderr)
            with contextlib.suppress(OSError, ValueError, KeyError):
                SESSION_S.setdefault(" ".join(extra), []).append(
                    json.loads((Path(out) / "results.json").read_text())["duration_s"]
                )
    return statistics.median(times), code, statistics.median(cpus)


FILES_WRITTEN: list[int] = []  # files in the output folder of each in-process run
SESSION_S: dict[str, list[float]] = {}  # the pytest session part of each run, by options


def _not_passed(out: Path, stderr: bytes) -> list[str]:
    try:
        cases = json.loads((out / "results.json").read_text())["cases"]
    except (OSError, ValueError, KeyError):
        return [stderr.decode(errors="replace").strip()[-300:]]
    return [
        f"{c['id']} {c['verdict']}: {c['reason']}"
        for c in cases
        if c["verdict"] not in ("pass", "n/a")
    ]


def _in_process(charges: _Charges | None = None) -> tuple[float, float, int]:
    """One serial run in this process: (harness CPU s, reference KMS CPU s, exit status)."""
    from conformance.run.runcmd import RunOptions, run

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0 = time.process_time()
    with tempfile.TemporaryDirectory(prefix="bench-", dir=OUT_BASE) as out:
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            if charges is None:
                code = run(RunOptions(output=out, quiet=True), out=sink, err=sink)
            else:
                with _instrumented(charges):
                    code = run(RunOptions(output=out, quiet=True), out=sink, err=sink)
        harness_cpu = time.process_time() - cpu0
        FILES_WRITTEN.append(sum(1 for p in Path(out).rglob("*") if p.is_file()))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    kms_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return harness_cpu, kms_cpu, code


# The entry points whose CPU time is charged to a part; a call nested in another part's
# entry point is charged to its own part and paused in the outer one.
ENTRY_POINTS: dict[str, tuple[str, ...]] = {
    "crypto (ECCSI, SAKKE, UID, AES, HMAC)": (
        "conformance.crypto.sakke:validate_rsk",
        "conformance.crypto.sakke:validate_public_key",
        "conformance.crypto.eccsi:validate_signing_keys",
        "conformance.crypto.eccsi:validate_public_auth_key",
        "conformance.crypto.uid:mikey_sakke_uid",
        "conformance.xmlsec.xmlenc:decrypt_content",
        "conformance.xmlsec.xmlenc:unwrap_key",
        "conformance.xmlsec.xmldsig:verify",
    ),
    "XML parsing and schema validation": (
        "conformance.core.xmlsafe:parse_xml",
        "conformance.model.messages:parse_response",
        "conformance.profiles.profile:load_schema",
        "conformance.checks.envelope:schema_errors",
    ),
    "HTTP and TLS (probe, httpx, ssl)": ("conformance.probe.sender:Probe._exchange",),
    "checks and engine": (
        "conformance.checks.base:run_check",
        "conformance.run.engine:Runner.run_case",
    ),
    REPORTS: (
        "conformance.report:write_reports",
        "conformance.report.allure_support:decorate",
        "conformance.report.redact:Capture.case",
        "conformance.report.evidence:spill_case",
        # allure-pytest writing its result, container and attachment files
        "allure_commons.logger:AllureFileLogger.report_result",
        "allure_commons.logger:AllureFileLogger.report_container",
        "allure_commons.logger:AllureFileLogger.report_attached_data",
    ),
}


# Entry points that run in a thread of their own (the evidence writer): their whole
# thread's CPU time is charged to the part; the other parts count the main thread only.
THREAD_ENTRY_POINTS: dict[str, tuple[str, ...]] = {}
_WHO = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)


FILE_MS: list[float] = []


def _file_creation_ms() -> float:
    """CPU milliseconds per small file created in a new folder, on the outputs' file system."""
    OUT_BASE.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-files-", dir=OUT_BASE) as base:
        start = time.process_time()
        for folder in range(75):
            path = Path(base) / f"d{folder}"
            path.mkdir()
            for name in range(4):
                (path / f"f{name}").write_bytes(b"x" * 2000)
        return (time.process_time() - start) * 1000 / 300


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(_WHO)
    return usage.ru_utime, usage.ru_stime


class _Charges:
    """CPU time (user and system, getrusage) per part, with nesting: a minimal tracing
    profiler."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {name: 0.0 for name in ENTRY_POINTS}
        self.system: dict[str, float] = {name: 0.0 for name in ENTRY_POINTS}
        self._stack: list[list[Any]] = []

    def _charge(self, part: str, since: tuple[float, float], now: tuple[float, float]) -> None:
        self.seconds[part] += (now[0] - since[0]) + (now[1] - since[1])
        self.system[part] += now[1] - since[1]

    def wrap(self, part: str, function: Any) -> Any:
        charges = self

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            now = _cpu()
            if charges._stack:
                top = charges._stack[-1]
                charges._charge(top[0], top[1], now)
            charges._stack.append([part, now])
            try:
                return function(*args, **kwargs)
            finally:
                end = _cpu()
                charges._charge(part, charges._stack.pop()[1], end)
                if charges._stack:
                    charges._stack[-1][1] = end

        return timed

    def wrap_thread(self, part: str, function: Any) -> Any:
        charges = self

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = _cpu()
            try:
                return function(*args, **kwargs)
            finally:
                charges._charge(part, start, _cpu())

        return timed


@contextlib.contextmanager
def _instrumented(charges: _Charges) -> Any:
    undo = []
    entries = [(part, target, False) for part, ts in ENTRY_POINTS.items() for target in ts]
    entries += [(part, target, True) for part, ts in THREAD_ENTRY_POINTS.items() for target in ts]
    for part, target, own_thread in entries:
        module_name, _, qualname = target.partition(":")
        owner: Any = importlib.import_module(module_name)
        *path, name = qualname.split(".")
        for attribute in path:
            owner = getattr(owner, attribute)
        original = getattr(owner, name)
        wrap = charges.wrap_thread if own_thread else charges.wrap
        setattr(owner, name, wrap(part, original))
        undo.append((owner, name, original))
        # Modules that imported the function by name hold their own reference.
        for module in list(sys.modules.values()):
            if (
                module is not None
                and module.__name__.startswith("conformance")
                and getattr(module, name, None) is original
                and module is not owner
            ):
                setattr(module, name, getattr(owner, name))
                undo.append((module, name, original))
    try:
        yield
    finally:
        for owner, name, original in reversed(undo):
            setattr(owner, name, original)


def main() -> None:
    problems: list[str] = []
    serial, code1, serial_cpu = _wall([], problems)
    parallel, code2, parallel_cpu = _wall(["-n", "2"], problems)
    session = statistics.median(SESSION_S.get("", [0.0]))
    session2 = statistics.median(SESSION_S.get("-n 2", [0.0]))
    FILE_MS.append(_file_creation_ms())
    _in_process()  # warm-up: imports and first-use caches are not what is measured
    harness_cpu, kms_cpu, code3 = _in_process()
    charges = _Charges()
    traced_cpu, _, _ = _in_process(charges)
    shares = dict(charges.seconds)
    rest = "pytest, start-up and the rest"
    shares[rest] = max(0.0, traced_cpu - sum(shares.values()))
    total = sum(shares.values()) or 1.0
    report_share = shares[REPORTS] / total
    speedup = serial / parallel if parallel else 0.0
    lines = [
        "## Full run against the embedded reference KMS",
        "",
        "Command: `python bench/full_run.py` (part of `make bench`): `kms-conformance run` in a",
        f"subprocess, median of {RUNS} runs each (wall time, and the CPU time of the harness",
        "and reference KMS processes); then serial runs in-process (one warm-up, one timed",
        "for CPU, one with CPU time charged per part). `-n 2` runs two concurrent lanes,",
        "processes forked from the run (conformance/run/lanes.py). Outputs are written under",
        "reports/.",
        "",
        "| Measure | Value | Target | Met |",
        "|---|---|---|---|",
        f"| wall time, serial (`kms-conformance run`) | {serial:.1f} s | <= {TARGET_S:.0f} s | "
        f"{_yes(serial <= TARGET_S)} |",
        f"| wall time, `-n 2` | {parallel:.1f} s | | |",
        f"| speedup with `-n 2` | {speedup:.2f}x | >= {TARGET_SPEEDUP}x | "
        f"{_yes(speedup >= TARGET_SPEEDUP)} |",
        f"| CPU time of harness + KMS processes, serial / `-n 2` | {serial_cpu:.1f} s / "
        f"{parallel_cpu:.1f} s | | |",
        f"| pytest session (results.json duration_s), serial / `-n 2` | {session:.1f} s / "
        f"{session2:.1f} s | | |",
        f"| harness CPU time (one serial run in-process, imports warm) | {harness_cpu:.1f} s | | |",
        f"| reference KMS CPU time for the same run | {kms_cpu:.1f} s | | |",
        f"| harness CPU / KMS CPU | {harness_cpu / kms_cpu if kms_cpu else 0:.2f} | | |",
        f"| reports, evidence, Allure: share of the harness's CPU | {report_share:.0%} | "
        f"<= {TARGET_REPORT_SHARE:.0%} | {_yes(report_share <= TARGET_REPORT_SHARE)} |",
        f"| CPU per file created on the outputs' file system, now | {FILE_MS[0]:.2f} ms | | |",
        f"| exit statuses (serial, -n 2, in-process) | {code1}, {code2}, {code3} | 0 | "
        f"{_yes(not (code1 or code2 or code3))} |",
        "",
        "Where the harness's CPU time goes in one serial in-process run. Profiler: a minimal",
        "tracing one in bench/full_run.py (`_Charges`), which charges the CPU time",
        "(getrusage: user + system) of a few entry points per part, nested calls to their own",
        "part; the reports part holds write_reports, the Allure decoration, the redaction at",
        "capture (redact.Capture.case) and allure-pytest's file writing (its listener's own",
        "bookkeeping stays in the rest). cProfile and pyinstrument were tried first and",
        "dropped here: cProfile's per-call overhead tripled the run, and pyinstrument samples",
        "wall time, which mixes in waiting for the KMS.",
        "",
        "| Part | Share | Seconds | of which system |",
        "|---|---|---|---|",
    ]
    for name, seconds in sorted(shares.items(), key=lambda kv: -kv[1]):
        system = charges.system.get(name)
        lines.append(
            f"| {name} | {100 * seconds / total:.0f}% | {seconds:.2f} | "
            f"{'-' if system is None else f'{system:.2f}'} |"
        )
    if problems:
        lines += ["", "Cases that did not pass in a timed run (a finding to explain):", ""]
        lines += [f"- {p}" for p in problems]
    lines += _missed(
        serial=serial,
        parallel=parallel,
        session=session,
        session2=session2,
        harness_cpu=harness_cpu,
        kms_cpu=kms_cpu,
        serial_cpu=serial_cpu,
        parallel_cpu=parallel_cpu,
    )
    if report_share > TARGET_REPORT_SHARE:
        system = charges.system[REPORTS]
        files = FILES_WRITTEN[-1] if FILES_WRITTEN else 0
        lines += [
            "",
            f"Reports, evidence and Allure miss the {TARGET_REPORT_SHARE:.0%} target "
            f"({report_share:.0%}, {shares[REPORTS]:.2f} s): {system:.2f} s of it is system",
            f"time, the kernel creating the {files} files a run writes (evidence: 4 or 5 per",
            "step plus 2 per case, each written once in place; allure-results: one per",
            "attachment and per result, each a temporary file renamed by allure-pytest), "
            f"{1000 * system / max(files, 1):.2f} ms",
            f"each; {shares[REPORTS] - system:.2f} s is user time (redaction at capture,",
            "serialising, allure-pytest's JSON, results.json, JUnit, the HTML report). The",
            f"user part alone is {(shares[REPORTS] - system) / total:.0%} of the harness's CPU.",
            f"Creating a file cost {FILE_MS[0]:.2f} ms of CPU when this bench ran (300 small",
            "files in 75 new folders under reports/, the shape of evidence/); it varies with",
            "the file system's state (0.03 to 1.3 ms on this machine), so this share does too.",
            f"At the cheapest file creation seen here (0.03 ms) the {files} files would cost",
            f"{0.03 * files / 1000:.2f} s; the user part "
            + (
                "alone is over the target, so"
                if (shares[REPORTS] - system) / total > TARGET_REPORT_SHARE
                else "is under the target, but with the files"
            ),
            f"{TARGET_REPORT_SHARE:.0%} is not reachable while a run writes every exchange of "
            "every case twice",
            "(evidence, DESIGN 6, and Allure attachments). What would reach it: Allure",
            "attachments only for cases that did not pass and one evidence file per step,",
            "which changes what the outputs hold; the project keeps the content.",
        ]
    lines.append("")
    print("\n".join(lines))


def _yes(met: bool) -> str:
    return "yes" if met else "no"


def _missed(
    *,
    serial: float,
    parallel: float,
    session: float,
    session2: float,
    harness_cpu: float,
    kms_cpu: float,
    serial_cpu: float,
    parallel_cpu: float,
) -> list[str]:
    """The measured reason for each missed wall-time target."""
    lines: list[str] = []
    speedup = serial / parallel if parallel else 0.0
    fixed = max(0.0, serial - session)
    if serial > TARGET_S:
        lines += [
            "",
            f"Serial wall time misses {TARGET_S:.0f} s ({serial:.1f} s): the pytest session",
            f"(cases) is {session:.1f} s, the rest ({fixed:.1f} s: interpreter and imports,",
            "the reference KMS starting in its own process, loading the catalogue, pytest",
            "collection, writing the reports, stopping the KMS) is fixed per run. In the",
            f"session the harness ({harness_cpu:.1f} s CPU for the whole in-process run) and",
            f"the KMS ({kms_cpu:.1f} s) take turns on the CPU.",
        ]
    if speedup < TARGET_SPEEDUP and serial:
        busy = harness_cpu - fixed + kms_cpu
        bound = serial / (fixed + max(busy / 2, kms_cpu, session / 2))
        lines += [
            "",
            f"`-n 2` misses {TARGET_SPEEDUP}x ({speedup:.2f}x; session {session:.1f} s serial,",
            f"{session2:.1f} s with two lanes; CPU of harness and KMS {serial_cpu:.1f} s",
            f"serial, {parallel_cpu:.1f} s with two lanes). Only the session runs",
            "concurrently: start-up, collection and the reports are the fixed part, and in",
            "the session the two lanes (forked processes), the run's own process (pytest,",
            "Allure) and the KMS share two cores, so the bound is serial / (fixed +",
            f"(harness session CPU + KMS CPU) / 2) = {bound:.2f}x on these figures, before",
            f"the CPU that lanes add ({parallel_cpu - serial_cpu:.1f} s more with two lanes "
            "here: each lane opens",
            "its own HTTPS connections and sends its own KMS Initialize, is forked and sends",
            "its results back; its copy-on-write faults were about 5,500 pages a lane when",
            "measured with getrusage). On two cores the run is CPU-bound once the lanes",
            "overlap the KMS, so what would reach 1.3x is less CPU per case, mostly in the",
            "outputs (see the reports row), or more cores (against a remote KMS, where lanes",
            "wait instead of compute, see the next section).",
        ]
    return lines


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
