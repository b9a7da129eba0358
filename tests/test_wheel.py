"""A plain (non-editable) install carries the catalogue and the XSDs (README "Use in CI")."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_ships_the_catalogue_and_the_schemas(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("kms_conformance-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for case_file in (ROOT / "testcases").glob("*.yaml"):
        assert f"conformance/_catalogue/{case_file.name}" in names
    assert "conformance/_catalogue/case-schema.json" in names
    for xsd in (ROOT / "schemas").rglob("*.xsd"):
        assert f"conformance/_schemas/{xsd.relative_to(ROOT / 'schemas')}" in names
    assert "conformance/checks/checks.toml" in names
    assert "conformance/report/report.html.j2" in names
    assert "conformance/report/pctr.html.j2" in names
    assert "conformance/report/results.schema.json" in names
