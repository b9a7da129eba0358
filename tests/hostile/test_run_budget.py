"""Memory and disk per run against a target that answers every request at the cap
(issue 13, class 2).

The hostile server relays a reference KMS and pads each answer with a trailing XML comment
to one octet under ``max_body_bytes`` (4 MiB), so every case keeps its honest verdict
while every exchange costs the most the target file allows. The whole catalogue runs
through the real command; its peak RSS must stay under 300 MB and what it leaves on disk
under 200 MB, with the evidence budget (``limits.max_evidence_bytes``) named wherever it
cut a body. The measured numbers are printed (``-s``, and the session summary).
"""

from __future__ import annotations

import json
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import hostile_server
from cli_runs import output_bytes, report_measurement, run_cli

from conformance.catalogue.cases import load_catalogue
from conformance.core.limits import DEFAULT_LIMITS
from conformance.report.results_json import SCHEMA_FILE
from conformance.run.runcmd import embedded_kms

MAX_RSS_MB = 300.0
MAX_OUTPUT_MB = 200.0
# Under pytest-timeout's 300 s per test (pyproject.toml), so a slow run fails with its numbers.
COMMAND_LIMIT_S = 280.0
MB = 1024 * 1024


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[str, Path, dict]]:
    with embedded_kms(()) as (target_file, _label):
        document = tomllib.loads(target_file.read_text(encoding="utf-8"))
        yield document["target"]["base_url"], Path(document["target"]["ca_file"]), document


@pytest.mark.slow
def test_whole_catalogue_at_the_cap_stays_in_budget(
    upstream: tuple[str, Path, dict], tmp_path: Path
) -> None:
    base_url, ca_file, target = upstream
    relay = hostile_server.relay(base_url, ca_file)
    output = tmp_path / "out"
    with hostile_server.serving("at-cap", tmp_path / "server", relay, target) as (server, file):
        done = run_cli(
            ["run", "--target", str(file), "--output", str(output)], tmp_path, COMMAND_LIMIT_S
        )
        answered = len(server.requests)
    written = output_bytes(output)
    evidence = output_bytes(output / "evidence")
    allure = output_bytes(output / "allure-results")
    document = json.loads((output / "results.json").read_text(encoding="utf-8"))
    cases = document["cases"]
    jsonschema.validate(document, json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))
    report_measurement(
        "at-cap-whole-catalogue",
        f"whole catalogue at the cap: {len(cases)} cases, {answered} answers of "
        f"{hostile_server.MAX_BODY_BYTES - 1} octets: exit {done.status} in {done.seconds:.0f} s, "
        f"peak RSS {done.peak_rss_mb:.0f} MB, output {written / MB:.1f} MB "
        f"(evidence {evidence / MB:.1f} MB, allure-results {allure / MB:.1f} MB)",
    )
    assert not done.hung, f"still running after {COMMAND_LIMIT_S:.0f} s"
    assert "Traceback" not in done.stdout + done.stderr, done.stderr[-2000:]
    assert {c["id"] for c in cases} == {c.id for c in load_catalogue()}
    assert done.peak_rss_mb < MAX_RSS_MB, f"peak RSS {done.peak_rss_mb:.0f} MB"
    assert written < MAX_OUTPUT_MB * MB, f"{written / MB:.0f} MB of output"
    # Every case was answered at the cap, so the budget ran out and each cut is named.
    summary = document["evidence"]
    assert summary["truncated"] and summary["max_evidence_bytes"] == (
        DEFAULT_LIMITS.max_evidence_bytes
    )
    assert summary["bytes"] <= DEFAULT_LIMITS.max_evidence_bytes + 8 * MB  # + metadata
    cut = set(summary["truncated_cases"])
    assert cut and cut <= {c["id"] for c in cases}
    for case in cases:
        notes = case.get("evidence_notes", [])
        assert bool(notes) == (case["id"] in cut), case["id"]
        assert all("limits.max_evidence_bytes" in note for note in notes)
    html = (output / "report.html").read_text(encoding="utf-8")
    assert "Evidence truncated: limits.max_evidence_bytes" in html
    # Padding is no error: a case the padding cannot touch keeps its verdict.
    verdicts = {c["id"]: c["verdict"] for c in cases}
    assert verdicts["TRANSPORT-CTYPE-001"] == "pass", verdicts["TRANSPORT-CTYPE-001"]


@pytest.mark.slow
def test_workers_share_one_evidence_budget(
    upstream: tuple[str, Path, dict], tmp_path: Path
) -> None:
    """Two lanes (processes forked by `run -n 2` on Linux, else threads) write evidence as
    their cases end and draw on one budget; no body travels back with the results, and no
    staging folder is left behind."""
    base_url, ca_file, target = upstream
    budget = 6 * MB
    relay = hostile_server.relay(base_url, ca_file)
    output = tmp_path / "out"
    limits = {"max_evidence_bytes": budget}
    with hostile_server.serving("at-cap", tmp_path / "server", relay, target, limits) as (_, file):
        argv = ["run", "--target", str(file), "--output", str(output), "-n", "2"]
        argv += ["--cases", "KEYPROV-*"]
        done = run_cli(argv, tmp_path, COMMAND_LIMIT_S)
    document = json.loads((output / "results.json").read_text(encoding="utf-8"))
    bodies = sum(
        f.stat().st_size
        for name in ("request.body", "response.body", "plaintext.xml")
        for f in output.glob(f"evidence/*/*/{name}")
    )
    report_measurement(
        "at-cap-two-workers",
        f"KEYPROV-* at the cap on 2 workers: {len(document['cases'])} cases, exit "
        f"{done.status} in {done.seconds:.0f} s, peak RSS {done.peak_rss_mb:.0f} MB (largest "
        f"process), bodies {bodies / MB:.1f} MB of a {budget / MB:.0f} MB budget",
    )
    assert not done.hung and "Traceback" not in done.stdout + done.stderr, done.stderr[-2000:]
    assert done.status == 0, done.stdout[-2000:]
    jsonschema.validate(document, json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))
    assert document["evidence"]["max_evidence_bytes"] == budget
    assert document["evidence"]["truncated"]
    # Redaction markers may lengthen a body a little; the cut is by octets received.
    assert bodies <= budget + 64 * 1024
    assert not list(output.glob(".evidence*")), list(output.iterdir())
    assert not list(output.glob("evidence/.evidence-budget"))
    assert done.peak_rss_mb < MAX_RSS_MB
