"""`kms-conformance run | list | explain | replay | coverage` end to end, as a user runs them.

Every run here starts the embedded reference KMS in its own process over loopback HTTPS
(the CLI does that when no --target is given) and reads the reports it wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html import escape as html_escape
from pathlib import Path

import jsonschema
import pytest

from conformance.catalogue.cases import load_catalogue
from conformance.run.runcmd import coverage_markdown, embedded_kms
from conformance.target.file import load_target

CLI = [sys.executable, "-m", "conformance.run.cli"]
ROOT = Path(__file__).resolve().parent.parent


def _cli(
    *args: str, cwd: Path | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd or ROOT, env=env
    )


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_run_against_the_embedded_kms_passes_and_writes_every_report(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    done = _cli("run", "--output", str(out), "--cases", "INIT-*", "KEYPROV-UID-*", "ERR-AUTH-*")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr
    assert "pass" in done.stdout and "reports:" in done.stdout
    results = _results(out)
    assert results["schema"] == "kms-conformance/results/1"
    schema = json.loads((ROOT / "conformance/report/results.schema.json").read_text())
    jsonschema.validate(results, schema)
    ids = {c["id"] for c in results["cases"]}
    assert ids and all(i.startswith(("INIT-", "KEYPROV-UID-", "ERR-AUTH-")) for i in ids)
    assert results["summary"]["fail"] == 0 and results["summary"]["error"] == 0
    for name in ("junit.xml", "report.html"):
        assert (out / name).stat().st_size > 1000
    assert any((out / "allure-results").glob("*-result.json"))
    for case_id in ids:
        assert (out / "evidence" / case_id / "case.json").is_file()


# One fault per area through the real CLI (the fault matrix covers all 68 in-process);
# two of them break only should/inferred rules.
CLI_FAULTS = (
    "uid-first-octet-0x30",
    "sig-trk-although-ink",
    "envelope-wrong-namespace",
    "cert-unknown-answered-200",
    "auth-bad-signature-accepted",
    "lookup-wrong-kms-uri",
)


def test_a_full_run_with_no_arguments_passes(tmp_path: Path) -> None:
    """Issue 4's first Done-when: the whole catalogue against the embedded KMS, exit 0."""
    done = _cli("run", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
    results = _results(tmp_path / "reports" / "latest")
    assert len(results["cases"]) >= 120
    assert results["summary"]["fail"] == 0 and results["summary"]["error"] == 0
    assert results["summary"]["pass"] >= 120


@pytest.mark.parametrize("name", CLI_FAULTS)
def test_a_fault_makes_its_cases_fail_with_exit_1(name: str, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    faults = json.loads(_cli("faults", "--json").stdout)
    fault = next(f for f in faults if f["name"] == name)
    done = _cli(
        "run", "--output", str(out), "--embedded-fault", fault["name"], "--cases", *fault["cases"]
    )
    assert done.returncode == 1, done.stdout[-3000:]
    verdicts = {c["id"]: c["verdict"] for c in _results(out)["cases"]}
    assert all(verdicts[c] == "fail" for c in fault["cases"]), verdicts
    assert all(f"FAIL   {c}" in done.stdout for c in fault["cases"])
    html = (out / "report.html").read_text()
    assert "not conformant" in html.lower()
    # Failing cases come first, with their reason, and their details link the evidence.
    attention = html[html.index('id="attention"') : html.index("Cases by area")]
    for case_id in fault["cases"]:
        assert case_id in attention
        assert f"evidence/{case_id}/" in html
    first = next(c for c in _results(out)["cases"] if c["id"] == fault["cases"][0])
    reason = first["reason"].split("'")[0].split('"')[0]  # quotes escape differently
    assert html_escape(reason, quote=False) in attention


def test_a_should_level_fault_warns_and_fails_only_with_strict(tmp_path: Path) -> None:
    with embedded_kms(["no-cache-control"]) as (target, _label):
        common = ["--target", str(target), "--cases", "TRANSPORT-CACHE-001"]
        lenient = _cli("run", "--output", str(tmp_path / "a"), *common)
        strict = _cli("run", "--output", str(tmp_path / "b"), "--strict", *common)
    assert lenient.returncode == 0, lenient.stdout[-2000:]
    assert "WARN   TRANSPORT-CACHE-001" in lenient.stdout and "--strict" in lenient.stdout
    assert strict.returncode == 1, strict.stdout[-2000:]
    assert "FAIL   TRANSPORT-CACHE-001" in strict.stdout
    # As an embedded self-test the same fault fails the run: a warning is a catch.
    embedded = _cli(
        "run",
        "--output",
        str(tmp_path / "c"),
        "--embedded-fault",
        "no-cache-control",
        "--cases",
        "TRANSPORT-CACHE-001",
    )
    assert embedded.returncode == 1, embedded.stdout[-2000:]
    assert "self-test" in embedded.stderr and "FAIL   TRANSPORT-CACHE-001" in embedded.stdout


def test_replay_resends_a_recorded_case(tmp_path: Path) -> None:
    with embedded_kms([]) as (target, _label):
        out = tmp_path / "reports"
        first = _cli(
            "run", "--target", str(target), "--output", str(out), "--cases", "KEYPROV-UID-001"
        )
        assert first.returncode == 0, first.stdout[-2000:]
        again = _cli("replay", str(out), "KEYPROV-UID-001")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "replayed 1 recorded request" in again.stdout and "verdict: pass" in again.stdout
        missing = _cli("replay", str(out), "NO-SUCH-CASE-001")
        assert missing.returncode == 2 and "Traceback" not in missing.stderr
        assert len(missing.stderr.strip().splitlines()) == 1


def test_the_pytest_plugin_runs_cases_under_xdist_with_junit_properties(tmp_path: Path) -> None:
    with embedded_kms([]) as (target, _label):
        junit = tmp_path / "junit.xml"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "conformance.run.plugin",
                "-p",
                "no:cacheprovider",
                "-c",
                os.devnull,
                "--rootdir",
                str(ROOT / "testcases"),
                str(ROOT / "testcases"),
                "--kms-target",
                str(target),
                "--kms-output",
                str(tmp_path / "out"),
                "-n",
                "2",
                "-k",
                "KEYPROV-UID or ERR-AUTH-NOTOKEN",
                "--junitxml",
                str(junit),
            ],
            capture_output=True,
            text=True,
            timeout=240,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        token = load_target(target).users[0].token
    assert done.returncode == 0, done.stdout[-2000:]
    text = junit.read_text()
    assert 'name="case_id" value="KEYPROV-UID-001"' in text and 'name="reqs"' in text
    assert token is not None and token.reveal().decode() not in text
    ids = {c["id"] for c in _results(tmp_path / "out")["cases"]}
    assert "KEYPROV-UID-001" in ids and any(i.startswith("ERR-AUTH-NOTOKEN") for i in ids)
    assert all(i.startswith(("KEYPROV-UID", "ERR-AUTH-NOTOKEN")) for i in ids)


def test_list_and_explain() -> None:
    listed = _cli("list", "--json")
    assert listed.returncode == 0
    rows = json.loads(listed.stdout)
    assert len(rows) >= 120 and {"id", "title", "reqs", "clause", "pics"} <= set(rows[0])
    explained = _cli("explain", "KEYPROV-UID-001")
    assert explained.returncode == 0
    assert "REQ-097" in explained.stdout and "keyset.uid" in explained.stdout
    unknown = _cli("explain", "NOPE-001")
    assert unknown.returncode == 2 and "no case" in unknown.stderr


def test_coverage_md_is_generated_and_current() -> None:
    text = coverage_markdown(load_catalogue())
    committed = (ROOT / "testcases" / "COVERAGE.md").read_text()
    assert committed == text, "testcases/COVERAGE.md is stale: run `make coverage`"
    assert "## Probe-testable but without a case\n\nNone." in text


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run", "--target", "/nonexistent/target.toml"], "not found"),
        (["run", "--cases", "NO-SUCH-*"], "no case matches"),
        (
            ["run", "--embedded-fault", "no-such-fault", "--cases", "INIT-CERT-ROLE-001"],
            "unknown fault",
        ),
    ],
)
def test_bad_run_input_is_exit_2_with_one_line(args: list[str], words: str, tmp_path: Path) -> None:
    done = _cli(*args, "--output", str(tmp_path / "out"))
    assert done.returncode == 2
    assert words in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
