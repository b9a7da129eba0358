"""Running the real ``kms-conformance`` command in a subprocess, as a user would.

Shared by the hostile-target and bad-user-input tests: the exit status, both output
streams, the wall time and the child's own peak RSS (``os.wait4``: the figure belongs to
this one process, not to every child the test worker ever had).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

KMS_CONFORMANCE = Path(sys.executable).with_name("kms-conformance")
CATALOGUE = Path(__file__).resolve().parents[2] / "testcases"


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
    started = time.monotonic()
    with out_file.open("wb") as out, err_file.open("wb") as err:
        process = subprocess.Popen(
            [str(KMS_CONFORMANCE), *argv],
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
                process.kill()
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
        peak_rss_mb=usage.ru_maxrss / 1024,  # kilobytes on Linux
        hung=hung,
    )


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
