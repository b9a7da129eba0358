"""Every fault of ``faults`` is shown from the command line (issue 11, Done when).

For each fault of the catalogue, ``kms-conformance run --embedded-fault NAME`` with no
other flag but ``--cases`` (restricted to the fault's listed cases, to keep the run to a
couple of seconds) starts the embedded KMS in the protection mode the fault needs, fails
every listed case, and exits 1; in each listed case a violated or warned check whose REQ
ids meet the fault's caught it (results.json says which). About 2 s per fault.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

FAULTS: list[dict[str, Any]] = json.loads(
    subprocess.run(
        [sys.executable, "-m", "conformance.run.cli", "faults", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
)


def test_the_catalogue_has_every_fault() -> None:
    assert len(FAULTS) >= 68
    needing = {f["name"]: f["embedded_config"] for f in FAULTS if f["embedded_config"]}
    # The encryption faults need an encrypting KMS; the rotation faults (issue 12) one
    # that rotates keys, the kms-cert ones one whose certificate the harness may replace;
    # every other fault shows in the default configuration.
    prefixes = ("enc-", "keys-", "rotation-", "kms-cert-")
    assert {n for n in needing if n.startswith(prefixes)} == set(needing)
    assert len([n for n in needing if n.startswith(("enc-", "keys-"))]) == 9, needing
    assert all(
        needing[n]["protection"].get("rotate_trk") for n in needing if n.startswith("rotation-")
    )
    kms_cert = [n for n in needing if n.startswith("kms-cert-")]
    assert len(kms_cert) == 4
    assert all(needing[n] == {"kms_cert_rotation": True} for n in kms_cert), needing


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS, ids=[f["name"] for f in FAULTS])
def test_run_embedded_fault_shows_the_fault(fault: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "reports"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "conformance.run.cli",
            "run",
            "--output",
            str(out),
            "--embedded-fault",
            fault["name"],
            "--cases",
            *fault["cases"],
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    cases = {c["id"]: c for c in json.loads((out / "results.json").read_text())["cases"]}
    rules = set(fault["reqs"])
    for case_id in fault["cases"]:
        case = cases[case_id]
        assert case["verdict"] == "fail", f"{case_id}: {case['verdict']}: {case['reason']}"
        caught = [
            c["name"]
            for c in case["checks"]
            if c["outcome"] in ("violation", "warning") and rules & set(c["reqs"])
        ]
        assert caught, f"{case_id} failed, but by no check of {sorted(rules)}: {case['reason']}"
    if fault["embedded_config"]:
        assert "which fault " + fault["name"] + " needs" in done.stderr, done.stderr
