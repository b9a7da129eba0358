"""Start-up of the commands that do no run: ``kms-conformance list`` and ``explain``.

Each command is run REPEATS times as a user starts it (a subprocess, wall time, after one
untimed run that fills the case-file validity cache); the median and the least are shown,
with the modules each imports (``python -X importtime``: the biggest). Prints Markdown.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPEATS = 11
TARGET_S = 0.5
COMMANDS = (["list"], ["explain", "KEYPROV-UID-001"], ["--help"])
HEAVY = ("pytest", "xmlschema", "jsonschema", "httpx", "jinja2", "allure", "gevent", "locust")


def _argv(command: list[str]) -> list[str]:
    return [sys.executable, "-m", "conformance.run.cli", *command]


def _times(command: list[str]) -> tuple[list[float], list[float]]:
    """Wall times and CPU times (user + system of the child) of REPEATS runs."""
    subprocess.run(_argv(command), capture_output=True, cwd=ROOT, check=True)
    walls, cpus = [], []
    for _ in range(REPEATS):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(_argv(command), capture_output=True, cwd=ROOT, check=True)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def _imported(command: list[str]) -> list[str]:
    """Top-level packages the command imports, of those known to be heavy."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "conformance.run.cli", *command],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    names = set()
    for line in done.stderr.splitlines():
        if "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return sorted(n for n in names if n.startswith(HEAVY))


def main() -> None:
    lines = [
        "## Start-up: commands that run no case",
        "",
        f"Command: `python bench/startup.py` (part of `make bench`): each command {REPEATS}",
        "times in a subprocess (wall time, and the CPU time of the child, which other work on",
        "the machine does not inflate) after one untimed run; heavy packages it imports per",
        "`python -X importtime`.",
        "",
        "| command | median s | least s | CPU s (median) | target | met | heavy imports |",
        "|---|---|---|---|---|---|---|",
    ]
    for command in COMMANDS:
        samples, cpus = _times(command)
        median = statistics.median(samples)
        target = TARGET_S if command[0] in ("list", "explain") else None
        met = "" if target is None else ("yes" if median <= target else "no")
        lines.append(
            f"| `kms-conformance {' '.join(command)}` | {median:.3f} | {min(samples):.3f} | "
            f"{statistics.median(cpus):.3f} | "
            f"{'' if target is None else f'<= {target} s'} | {met} | "
            f"{', '.join(_imported(command)) or 'none'} |"
        )
    lines.append("")
    print("\n".join(lines))


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
