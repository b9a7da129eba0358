"""Answers within the body cap that cost more to look at than to send (issue 13, class 1).

A hostile server sends, for every request, a KmsResponse with one pathological structure:
hundreds of thousands of attributes on one element, namespace declarations on every one
of thousands of nested elements, nesting near libxml2's own limit, megabytes of text, or
hundreds of thousands of elements. The real command runs two cases against it and each
case must end ``fail`` within its budget, with one line naming the ``[limits]`` key, its
value and what was observed. With the structural limits raised out of the way, the CPU
budget (``limits.case_cpu_s``) must stop the pure-Python schema validation instead, and
the run must go on normally after it.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import hostile_server
from cli_runs import Finished, report_measurement, run_cli, small_catalogue

from conformance.core.limits import DEFAULT_LIMITS, CpuBudgetExceeded, cpu_budget, paused
from conformance.run.lanes import can_fork
from conformance.run.runcmd import embedded_kms

CASES = ("TRANSPORT-CTYPE-001", "TRANSPORT-CTYPE-002")
# Two exchanges at most per case (its step and a preliminary KMS Initialize), each within
# timeout_s, plus parsing: the structural limits stop a case long before its CPU budget.
CASE_LIMIT_S = 2 * hostile_server.TIMEOUT_S + 5.0
COMMAND_LIMIT_S = 120.0

# mode -> the [limits] key its answers pass first
STRUCTURE: dict[str, str] = {
    "many-attributes": "max_attributes_per_element",
    "namespace-flood": "max_namespace_declarations",
    "deep-nesting": "max_depth",
    "huge-text": "max_text_chars",
    "many-elements": "max_elements",
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[str, Path, dict]]:
    """A reference KMS the hostile server relays where a mode spares a request."""
    with embedded_kms(()) as (target_file, _label):
        document = tomllib.loads(target_file.read_text(encoding="utf-8"))
        yield document["target"]["base_url"], Path(document["target"]["ca_file"]), document


def _run(
    mode: str,
    upstream: tuple[str, Path, dict],
    tmp_path: Path,
    cases: tuple[str, ...],
    limits: dict[str, object] | None = None,
    *,
    extra: tuple[str, ...] = (),
) -> tuple[Finished, list[dict]]:
    base_url, ca_file, target = upstream
    catalogue = small_catalogue(tmp_path / "catalogue", cases)
    relay = hostile_server.relay(base_url, ca_file)
    output = tmp_path / "out"
    with hostile_server.serving(mode, tmp_path / "server", relay, target, limits) as (_, file):
        argv = ["run", "--target", str(file), "--output", str(output), *extra, "--cases", *cases]
        done = run_cli(argv, tmp_path, COMMAND_LIMIT_S, {"KMS_CONFORMANCE_CASES": str(catalogue)})
    results = output / "results.json"
    found = json.loads(results.read_text(encoding="utf-8"))["cases"] if results.is_file() else []
    return done, found


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(STRUCTURE))
def test_pathological_answer_fails_naming_the_limit(
    mode: str, upstream: tuple[str, Path, dict], tmp_path: Path
) -> None:
    limit = STRUCTURE[mode]
    done, cases = _run(mode, upstream, tmp_path, CASES)
    allowed = getattr(DEFAULT_LIMITS, limit)
    report_measurement(
        f"structure-{mode}",
        f"{mode:18} exit {done.status}  {done.seconds:5.1f} s  {done.peak_rss_mb:5.0f} MB  "
        + "; ".join(f"{c['id']}: {c['verdict']} {c['duration_s']:.2f} s" for c in cases),
    )
    assert not done.hung, done.stdout[-400:]
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    assert done.status == 1, f"exit {done.status}\n{done.stdout}\n{done.stderr}"
    assert {c["id"] for c in cases} == set(CASES)
    for case in cases:
        reason = case["reason"]
        assert case["verdict"] == "fail", case
        assert case["duration_s"] < CASE_LIMIT_S, case
        assert "\n" not in reason and len(reason) <= 400, reason
        assert re.search(rf"response exceeds limits\.{limit} \({allowed}\): \S", reason), reason
        assert f"{case['id']}: {reason}" in done.stdout
        assert [c["name"] for c in case["checks"] if c["outcome"] == "violation"] == [
            "limits.structure"
        ]


@pytest.mark.slow
@pytest.mark.parametrize("lanes", [(), ("-n", "2")], ids=["serial", "forked-lanes"])
def test_cpu_budget_stops_the_validator_and_the_run_goes_on(
    upstream: tuple[str, Path, dict], tmp_path: Path, lanes: tuple[str, ...]
) -> None:
    """Namespace declarations allowed (so xmlschema gets the tree, and spends about 7 s of
    CPU in Python on it): the CPU budget ends that case, and the next case, answered
    honestly, passes in the same process (or, with -n 2 on Linux, in a lane process,
    where a case runs on the lane's main thread and the budget holds as well)."""
    if lanes and not can_fork():
        pytest.skip("thread lanes check the budget only between checks")
    budget_s = 2.0
    limits = {"max_namespace_declarations": 10_000_000, "case_cpu_s": budget_s}
    cases = ("ENV-SCHEMA-002", "TRANSPORT-CTYPE-001")  # run in this order (catalogue order)
    done, found = _run(
        "namespace-flood-keyprov-only", upstream, tmp_path, cases, limits, extra=lanes
    )
    by_id = {c["id"]: c for c in found}
    report_measurement(
        f"cpu-budget{'-lanes' if lanes else ''}",
        f"cpu budget {budget_s:g} s: exit {done.status} in {done.seconds:.1f} s; "
        + "; ".join(f"{c['id']}: {c['verdict']} {c['duration_s']:.2f} s" for c in found),
    )
    assert not done.hung and "Traceback" not in done.stdout + done.stderr, done.stderr
    assert done.status == 1, done.stdout + done.stderr
    stopped = by_id["ENV-SCHEMA-002"]
    assert stopped["verdict"] == "fail", stopped
    assert re.fullmatch(
        r"step1: check envelope\.schema: answer exceeds limits\.case_cpu_s \(2\): .*",
        stopped["reason"],
    ), stopped["reason"]
    # The budget is CPU time; on a machine shared by other jobs the wall time of 2 s of
    # CPU is several times longer, and the exchanges add their own. Without the budget the
    # validation goes on for minutes (COMMAND_LIMIT_S would end it as a hang).
    assert stopped["duration_s"] < 5 * budget_s + 2 * hostile_server.TIMEOUT_S + 10.0, stopped
    assert by_id["TRANSPORT-CTYPE-001"]["verdict"] == "pass", by_id["TRANSPORT-CTYPE-001"]


def test_cpu_budget_restores_the_timer_and_handler() -> None:
    """A budget hit inside a pure-Python loop raises there; afterwards no timer is left
    armed, the previous SIGPROF handler is back, and a paused clock does not count."""
    before = signal.getsignal(signal.SIGPROF)
    started = time.monotonic()
    with pytest.raises(CpuBudgetExceeded) as caught, cpu_budget(0.3):
        while True:
            sum(range(1000))
    assert 0.25 < time.monotonic() - started < 5.0
    assert "limits.case_cpu_s (0.3)" in str(caught.value)
    assert signal.getitimer(signal.ITIMER_PROF) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGPROF) is before
    with cpu_budget(0.3):
        with paused():
            time.sleep(0.5)  # no CPU spent, and the clock is stopped anyway
            spun = time.process_time()
            while time.process_time() - spun < 0.4:  # CPU while paused does not count
                pass
        sum(range(1000))
    with cpu_budget(5.0):
        sum(range(1000))  # a fresh budget after a hit works normally
    assert signal.getitimer(signal.ITIMER_PROF) == (0.0, 0.0)
