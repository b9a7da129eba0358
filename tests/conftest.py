"""Where the project's shared test data lives (../shared beside the checkout).

The tests read the spec digest and peer samples from the workspace's ``shared`` folder,
never from a copy in the repository. A fresh clone elsewhere (CI's, or ``git clone`` into
a temporary folder) finds it through its ``origin`` remote; ``KMS_CONFORMANCE_SHARED``
overrides both. The result is put in that environment variable for every test module and
every xdist worker.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _shared_candidates() -> list[Path]:
    candidates = [REPO.parent / "shared"]
    try:
        origin = subprocess.run(
            ["git", "-C", str(REPO), "config", "--get", "remote.origin.url"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        origin = ""
    if origin and "://" not in origin and Path(origin).is_dir():
        candidates.append(Path(origin).resolve().parent / "shared")
    return candidates


def _find_shared() -> Path:
    candidates = _shared_candidates()
    for candidate in candidates:
        if (candidate / "spec" / "requirements.md").is_file():
            return candidate
    return candidates[0]


os.environ.setdefault("KMS_CONFORMANCE_SHARED", str(_find_shared()))


# -- the fault-matrix detection table (issue 6): rows written by every worker, printed once --

_TABLE_ENV = "KMS_FAULT_TABLE_DIR"
# Measurements of the hostile-target tests (issue 13: peak RSS, output size, time): each
# test writes a line there, and the summary prints them whatever -n and -s say.
MEASURE_ENV = "KMS_HOSTILE_MEASURE_DIR"


def pytest_configure(config: object) -> None:
    if hasattr(config, "workerinput"):
        return  # an xdist worker: it inherited the controller's folder
    import tempfile

    os.environ[_TABLE_ENV] = tempfile.mkdtemp(prefix="kms-fault-table-")
    os.environ[MEASURE_ENV] = tempfile.mkdtemp(prefix="kms-hostile-measure-")


def pytest_terminal_summary(terminalreporter: object, exitstatus: int, config: object) -> None:
    _measurements(terminalreporter, config)
    folder = os.environ.get(_TABLE_ENV)
    if not folder or hasattr(config, "workerinput"):
        return
    rows = sorted(Path(folder).glob("*.txt"))
    if not rows:
        return
    write = terminalreporter.write_line  # type: ignore[attr-defined]
    terminalreporter.section("fault detection table")  # type: ignore[attr-defined]
    write(f"{'fault':40} {'detected':9} {'as':13} detecting cases")
    detected = 0
    for row in rows:
        text = row.read_text(encoding="utf-8")
        detected += text.split()[1] == "yes"
        for line in text.splitlines():
            write(line)
    write(f"{detected} of {len(rows)} faults detected")


def _measurements(terminalreporter: object, config: object) -> None:
    folder = os.environ.get(MEASURE_ENV)
    if not folder or hasattr(config, "workerinput"):
        return
    rows = sorted(Path(folder).glob("*.txt"))
    if not rows:
        return
    terminalreporter.section("hostile target measurements")  # type: ignore[attr-defined]
    for row in rows:
        for line in row.read_text(encoding="utf-8").splitlines():
            terminalreporter.write_line(line)  # type: ignore[attr-defined]
