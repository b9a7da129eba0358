"""Commands import only what they use (issue 15 item 2; timings are in bench/startup.py).

``list`` and ``explain`` compile no schema and import neither pytest, httpx, xmlschema nor
jinja2; with the catalogue validated once, not jsonschema either. No command of the
harness imports gevent or locust (the load command's, which monkey-patches the standard
library on import).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_SCRIPT = r"""
import io, json, sys
from conformance.run import runcmd
out = io.StringIO()
getattr(runcmd, sys.argv[1])(*sys.argv[2:], out=out)
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def _modules(tmp_path: Path, *command: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KMS_CONFORMANCE_CACHE": str(tmp_path)}
    for _ in range(2):  # the first run validates the case files and remembers them
        done = subprocess.run(
            [sys.executable, "-c", _SCRIPT, *command],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=True,
        )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_list_and_explain_import_no_heavy_package(tmp_path: Path) -> None:
    heavy = {"pytest", "_pytest", "httpx", "xmlschema", "jinja2", "jsonschema", "allure"}
    for command in (("list_cases", ""), ("explain", "KEYPROV-UID-001")):
        imported = _modules(tmp_path, *command)
        assert not imported & heavy, f"{command[0]} imports {sorted(imported & heavy)}"


def test_the_run_command_imports_no_gevent_or_locust() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, conformance.run.cli, conformance.run.runcmd, conformance.run.plugin, "
            "conformance.report, conformance.run.engine, conformance.run.offline, "
            "conformance.run.lanes; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('gevent', 'locust')))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    assert done.stdout.strip() == "[]"
