"""Running the real ``kms-conformance`` command in a subprocess, as a user would.

Shared by the hostile-target and bad-user-input tests: the exit status, both output
streams, the wall time and the command's own peak RSS (measured by ``measure_rss.py``, a small
process between the worker and the command: a child forked from the big pytest worker
would start its ru_maxrss at the worker's size).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

KMS_CONFORMANCE = Path(sys.executable).with_name("kms-conformance")
CATALOGUE = Path(__file__).resolve().parents[2] / "testcases"
MEASURE = Path(__file__).resolve().with_name("measure_rss.py")


@dataclass(frozen=True)
class Finished:
    status: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float
    hung: bool

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def run_cli(
    argv: list[str], directory: Path, limit_s: float, env: dict[str, str] | None = None
) -> Finished:
    """Run ``kms-conformance *argv``; kill it after ``limit_s`` (``hung`` says so)."""
    directory.mkdir(parents=True, exist_ok=True)
    out_file, err_file = directory / "stdout.txt", directory / "stderr.txt"
    rss_file = directory / "peak-rss-kb.txt"
    started = time.monotonic()
    with out_file.open("wb") as out, err_file.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, str(MEASURE), str(rss_file), str(KMS_CONFORMANCE), *argv],
            start_new_session=True,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        hung = False
        while True:
            pid, wait_status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - started > limit_s:
                hung = True
                os.killpg(process.pid, signal.SIGKILL)
                _, wait_status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.05)
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(wait_status)  # reaped by wait4 already
    return Finished(
        status=process.returncode,
        stdout=out_file.read_text(errors="replace"),
        stderr=err_file.read_text(errors="replace"),
        seconds=seconds,
        peak_rss_mb=_peak_kb(rss_file, usage.ru_maxrss) / 1024,  # kilobytes on Linux
        hung=hung,
    )


def report_measurement(name: str, line: str) -> None:
    """Print a measured line (``-s`` shows it) and keep it for the session's summary
    (tests/conftest.py prints every one of them at the end, with or without xdist)."""
    print("\n" + line)
    folder = os.environ.get("KMS_HOSTILE_MEASURE_DIR")
    if folder:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        Path(folder, f"{safe}.txt").write_text(line + "\n", encoding="utf-8")


def output_bytes(folder: Path) -> int:
    """Octets of every file under ``folder`` (what a run left on disk)."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _peak_kb(rss_file: Path, fallback_kb: int) -> int:
    try:
        return int(rss_file.read_text())
    except (OSError, ValueError):  # killed before it could write: the launcher's own figure
        return fallback_kb


def small_catalogue(folder: Path, case_ids: tuple[str, ...]) -> Path:
    """A catalogue folder (for ``KMS_CONFORMANCE_CASES``) with the schema, the requirements
    and only the cases ``case_ids``, copied verbatim from ``testcases/``: the command loads
    the catalogue twice per run, and the full one costs more than what a test exercises."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("case-schema.json", "requirements.yaml"):
        (folder / name).write_bytes((CATALOGUE / name).read_bytes())
    found = 0
    for path in sorted(CATALOGUE.glob("*.yaml")):
        if path.stem == "requirements":
            continue
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        chosen = [case for case in document["cases"] if case["id"] in case_ids]
        if chosen:
            found += len(chosen)
            text = yaml.safe_dump(document | {"cases": chosen}, sort_keys=False, allow_unicode=True)
            (folder / path.name).write_text(text, encoding="utf-8")
    if found != len(case_ids):
        raise LookupError(f"not every case of {case_ids} is in {CATALOGUE}")
    return folder
