"""The case catalogue as data: schema-valid files, stable ids, known checks, full REQ coverage.

Read with ``jsonschema`` and ``yaml`` directly, not through the loader, so a loader bug
cannot hide a broken catalogue (and the other way round).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from conformance.catalogue.cases import AREAS
from conformance.checks import REGISTRY
from refkms.faults import FAULTS

REPO = Path(__file__).resolve().parents[1]
CASES = REPO / "testcases"
CASE_ID = re.compile(r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)*-[0-9]{3}$")
REQ_ROW = re.compile(r"^\| (REQ-\d{3}) \|", re.MULTILINE)
MIN_CASES = 130
MAX_EXCHANGES = 250


@cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CASES / "case-schema.json").read_text())
    return loaded


@cache
def area_file(area: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CASES / f"{area}.yaml").read_text())
    return loaded


def all_cases() -> list[dict[str, Any]]:
    return [case for area in AREAS for case in area_file(area)["cases"]]


@cache
def requirements() -> dict[str, dict[str, Any]]:
    entries = yaml.safe_load((CASES / "requirements.yaml").read_text())["requirements"]
    return {entry["id"]: entry for entry in entries}


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())


@pytest.mark.parametrize("area", AREAS)
def test_area_file_validates_against_the_case_schema(area: str) -> None:
    document = area_file(area)
    errors = list(jsonschema.Draft202012Validator(schema()).iter_errors(document))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]
    assert document["area"] == area


def test_the_catalogue_holds_only_the_nine_area_files() -> None:
    stems = {p.stem for p in CASES.glob("*.yaml")} - {"requirements"}
    assert stems == set(AREAS)


@pytest.mark.parametrize(
    ("mutation", "words"),
    [
        ({"id": "keyprov-uid-1"}, "does not match"),
        ({"reqs": []}, "should be non-empty"),
        ({"steps": [{"request": "keyprov", "token": "stolen"}]}, "is not one of"),
        ({"steps": [{"request": "keyprov", "path": "/x"}]}, "should not be valid"),
        ({"steps": [{"request": "raw"}]}, "'path' is a required property"),
        ({"steps": [{"request": "init", "time": "now"}]}, "should not be valid"),
        ({"steps": [{"request": "init", "expect": {"status": "2XX"}}]}, "is not valid"),
        ({"steps": [{"request": "init", "fields": {"KmsUri": "x"}}]}, "'body' is a required"),
        ({"colour": "blue"}, "Additional properties"),
    ],
)
def test_the_schema_rejects_broken_cases(mutation: dict[str, Any], words: str) -> None:
    case = {
        "id": "KEYPROV-UID-001",
        "title": "t",
        "reqs": ["REQ-097"],
        "clause": "Annex F",
        "steps": [{"request": "keyprov"}],
    } | mutation
    document = {"area": "keyprov", "title": "t", "cases": [case]}
    messages = [e.message for e in jsonschema.Draft202012Validator(schema()).iter_errors(document)]
    best = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema()).iter_errors(document)
    )
    assert messages, "the broken case was accepted"
    assert best is not None
    assert any(words in m for m in messages) or words in best.message, messages


def test_case_ids_are_unique_well_formed_and_carry_their_area() -> None:
    ids = [case["id"] for case in all_cases()]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    assert all(CASE_ID.fullmatch(i) for i in ids)
    prefixes = {
        "transport": ("TRANSPORT-",),
        "request": ("REQUEST-",),
        "envelope": ("ENV-",),
        "init": ("INIT-",),
        "keyprov": ("KEYPROV-",),
        "certcache": ("CERTCACHE-", "CERT-"),
        "lookup": ("LOOKUP-", "REDIRECT-"),
        "security": ("SEC-",),
        "errors": ("ERR-",),
        "rotation": ("ROT-",),
    }
    for area in AREAS:
        for case in area_file(area)["cases"]:
            assert case["id"].startswith(prefixes[area]), (area, case["id"])


def test_the_catalogue_is_big_enough_and_cheap_enough() -> None:
    cases = all_cases()
    exchanges = sum(len(case["steps"]) for case in cases)
    assert len(cases) >= MIN_CASES
    assert exchanges < MAX_EXCHANGES


def test_every_check_name_is_registered() -> None:
    for case in all_cases():
        for step in case["steps"]:
            for name in step.get("checks", []):
                if any(ch in name for ch in "*?["):
                    assert fnmatch.filter(REGISTRY, name), (case["id"], name)
                else:
                    assert name in REGISTRY, (case["id"], name)


def test_every_case_cites_known_requirements() -> None:
    known = requirements()
    for case in all_cases():
        assert set(case["reqs"]) <= set(known), (case["id"], case["reqs"])


def test_requirements_yaml_lists_exactly_the_spec_digest_ids_in_order() -> None:
    digest = Path(os.environ["KMS_CONFORMANCE_SHARED"]) / "spec" / "requirements.md"
    assert list(requirements()) == REQ_ROW.findall(digest.read_text())


def test_every_requirement_entry_is_complete() -> None:
    for req_id, entry in requirements().items():
        assert entry["clause"] and entry["title"], req_id
        assert entry["strength"] in ("shall", "should", "may"), req_id
        assert isinstance(entry["inferred"], bool), req_id
        if entry.get("probe", True) is False:
            assert entry.get("reason"), f"{req_id}: probe: false needs a reason"
        else:
            assert "reason" not in entry, f"{req_id}: a reason without probe: false"


def test_harness_self_test_requirements_name_the_test_that_pins_them() -> None:
    for req_id in ("REQ-160", "REQ-161", "REQ-162", "REQ-163", "REQ-164"):
        entry = requirements()[req_id]
        assert entry["probe"] is False
        pinned = re.findall(r"tests/[\w/]+\.py", entry["reason"])
        assert pinned and all((REPO / p).is_file() for p in pinned), req_id


def test_every_probe_testable_requirement_has_a_case() -> None:
    covered = {req for case in all_cases() for req in case["reqs"]}
    testable = {r for r, e in requirements().items() if e.get("probe", True)}
    assert testable - covered == set()
    untestable = set(requirements()) - testable
    assert not covered & untestable, sorted(covered & untestable)


def test_every_fault_names_existing_cases_that_cite_its_requirements() -> None:
    by_id = {case["id"]: case for case in all_cases()}
    for fault in FAULTS:
        assert fault.cases, fault.name
        for case_id in fault.cases:
            assert case_id in by_id, f"{fault.name}: no case {case_id}"
        cited = {req for case_id in fault.cases for req in by_id[case_id]["reqs"]}
        assert cited & set(fault.reqs), f"{fault.name}: its cases cite none of {fault.reqs}"


def test_every_fault_case_runs_at_least_one_check_or_expectation_on_a_response() -> None:
    by_id = {case["id"]: case for case in all_cases()}
    for fault in FAULTS:
        for case_id in fault.cases:
            steps = by_id[case_id]["steps"]
            assert any(step.get("checks") or step.get("expect") for step in steps), case_id
