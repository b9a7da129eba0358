"""Concurrent lanes (`kms-conformance run -n N`, conformance/run/lanes.py) and the lane rule.

The rule (testcases/FORMAT.md, "Concurrency"): a serial group runs in catalogue order
without overlap; a case with ``changes_state: true`` overlaps with no other case; the rest
runs concurrently. A real run with -n 4 gives the same verdicts and check outcomes as a
serial one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from conformance.catalogue.cases import Case, load_catalogue
from conformance.run.lanes import LANES_ENV, ForkLanes, Lanes, can_fork, segments
from conformance.run.runcmd import embedded_kms
from conformance.verdicts.outcomes import Verdict
from conformance.verdicts.results import CaseResult

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "conformance.run.cli"]


def _cases(*specs: tuple[str, str, bool]) -> list[Case]:
    template = load_catalogue()[0]
    return [
        replace(template, id=case_id, serial_group=group, changes_state=state)
        for case_id, group, state in specs
    ]


def test_segments_keep_groups_in_one_unit_and_cut_at_state_changes() -> None:
    cases = _cases(
        ("A-001", "", False),
        ("G-001", "g", False),
        ("B-001", "", False),
        ("G-002", "g", False),
        ("ROT-001", "", True),
        ("C-001", "", False),
    )
    plan = [[[c.id for c in unit] for unit in segment] for segment in segments(cases)]
    assert plan == [
        [["A-001"], ["G-001", "G-002"], ["B-001"]],
        [["ROT-001"]],
        [["C-001"]],
    ]


# Both kinds of lanes: threads everywhere, forked processes where the system forks.
KINDS = [Lanes, pytest.param(ForkLanes, marks=pytest.mark.skipif(not can_fork(), reason="no fork"))]


def _pass(case: Case, reason: str = "") -> CaseResult:
    return CaseResult(case.id, case.title, case.area, Verdict.PASS, reason, (), (), ())


@pytest.mark.parametrize("kind", KINDS)
def test_lanes_run_concurrently_but_never_across_the_lane_rule(kind: type) -> None:
    specs = [(f"P-{n:03d}", "", False) for n in range(6)]
    specs += [("G-001", "g", False), ("G-002", "g", False), ("G-003", "g", False)]
    specs += [("ROT-001", "", True)] + [(f"Q-{n:03d}", "", False) for n in range(4)]
    cases = _cases(*specs)

    def new_runner():  # type: ignore[no-untyped-def]
        def run_case(case: Case) -> CaseResult:
            # The span travels in the result: a forked lane's memory is its own
            # (CLOCK_MONOTONIC is one clock for every process of the machine).
            start = time.monotonic()
            time.sleep(0.05)
            return _pass(case, f"{start} {time.monotonic()}")

        return run_case

    lanes = kind(cases, 4, new_runner)
    try:
        results = [lanes.result(c.id) for c in cases]
    finally:
        lanes.close()
    assert [r.id for r in results] == [c.id for c in cases]
    spans = {r.id: tuple(float(t) for t in r.reason.split()) for r in results}

    def overlap(a: str, b: str) -> bool:
        return spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]

    ids = [c.id for c in cases]
    assert any(overlap(a, b) for a in ids[:6] for b in ids[:6] if a != b), "no concurrency"
    assert not any(overlap("ROT-001", other) for other in ids if other != "ROT-001")
    assert spans["G-001"][1] <= spans["G-002"][0] and spans["G-002"][1] <= spans["G-003"][0]
    assert all(spans[q][0] >= spans["ROT-001"][1] for q in ids if q.startswith("Q-"))
    assert all(spans[p][1] <= spans["ROT-001"][0] for p in ids if p[0] in "PG")


@pytest.mark.parametrize("kind", KINDS)
def test_a_lane_error_reaches_its_case_and_the_others_still_run(kind: type) -> None:
    cases = _cases(("A-001", "", False), ("B-001", "", False))

    def new_runner():  # type: ignore[no-untyped-def]
        def run_case(case: Case) -> CaseResult:
            if case.id == "A-001":
                raise RuntimeError("boom")
            return _pass(case)

        return run_case

    lanes = kind(cases, 2, new_runner)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            lanes.result("A-001")
        assert lanes.result("B-001").verdict is Verdict.PASS
    finally:
        lanes.close()


@pytest.mark.skipif(not can_fork(), reason="no fork")
def test_a_lane_process_that_dies_fails_its_unit_and_the_other_lanes_go_on() -> None:
    cases = _cases(("A-001", "", False), ("B-001", "", False), ("C-001", "", False))

    def new_runner():  # type: ignore[no-untyped-def]
        def run_case(case: Case) -> CaseResult:
            if case.id == "A-001":
                time.sleep(0.2)  # the other lane takes B and C meanwhile
                os._exit(3)  # a crash the lane cannot report
            return _pass(case)

        return run_case

    lanes = ForkLanes(cases, 2, new_runner)
    try:
        with pytest.raises(RuntimeError, match="lane's process ended"):
            lanes.result("A-001")
        assert lanes.result("B-001").verdict is Verdict.PASS
        assert lanes.result("C-001").verdict is Verdict.PASS
    finally:
        lanes.close()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["processes", "threads"])
def test_run_with_lanes_gives_the_serial_verdicts_and_checks(tmp_path: Path, kind: str) -> None:
    if kind == "processes" and not can_fork():
        pytest.skip("no fork")
    env = {**os.environ, "PYTHONPATH": str(ROOT), LANES_ENV: kind}
    outcomes = {}
    with embedded_kms([]) as (target, _label):
        for workers in ("0", "4"):
            out = tmp_path / f"n{workers}"
            argv = [*CLI, "run", "--target", str(target), "--output", str(out), "-n", workers]
            done = subprocess.run(
                [*argv, "--cases", "KEYPROV-*", "ERR-AUTH-*", "SEC-*", "CERTCACHE-*"],
                capture_output=True,
                text=True,
                timeout=300,
                env=env,
            )
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
            cases = json.loads((out / "results.json").read_text())["cases"]
            outcomes[workers] = [
                (c["id"], c["verdict"], [(k["name"], k["outcome"]) for k in c["checks"]])
                for c in cases
            ]
            assert len(list((out / "evidence").iterdir())) == len(cases)
    assert len(outcomes["0"]) >= 40
    assert outcomes["4"] == outcomes["0"]
